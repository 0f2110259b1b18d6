"""Build the sandbox images (the envs call this at run time: Harbor task images, SWE repository images).

`python -m pivot_envs.images.build` (in a checkout also `python -m sandboxes.build`) builds
`pivotrl/sandbox-base:latest` (the default image of the docker sandbox backend) from `base.Dockerfile`
beside this module. Two ways to get a Debian base for it:

1. registry: `debian:bookworm-slim` is present locally or can be pulled -> build FROM it.
2. offline: no registry answers (the usual case on CI machines that only reach the Debian mirror)
   -> make a rootfs with `debootstrap --variant=minbase`, `docker import` it as
   `pivotrl/rootfs-bookworm`, and build the same Dockerfile FROM that.

The result is cached: nothing is built when the image exists, unless `--force`.

`build_task_image()` builds a task's own Dockerfile (Harbor / terminal-bench tasks ship one). Their
`FROM python:3.11-slim`-style lines cannot be pulled without a registry, so FROM images that are
neither local nor pullable are rewritten to the local sandbox base (Debian bookworm, whose python3
is 3.11) before building; images such as `python:3.x-slim` also provide `python`, so the rewritten
stage gets a `python` -> python3 link when it has none. `extra_lines` (e.g. the test dependencies
of a Harbor task, installed at build time because sandboxes have no network at run time) are
appended to the last stage.

The docker CLI is used (not the SDK) so that provisioning works before the Python extras exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

BASE_DOCKERFILE = Path(__file__).resolve().parent / "base.Dockerfile"  # package data: installed with the module
BUILD_COMMAND = "python -m pivot_envs.images.build"

DEFAULT_IMAGE = "pivotrl/sandbox-base:latest"
IMAGE_ENV_VAR = "PIVOTRL_BASE_IMAGE"
REGISTRY_BASE = "debian:bookworm-slim"
ROOTFS_IMAGE = "pivotrl/rootfs-bookworm"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Keep in sync with the apt-get line in base.Dockerfile. debootstrap installs them into the rootfs
# so the Dockerfile's apt step has nothing left to download on the offline path.
PACKAGES = (
    "bash", "coreutils", "python3", "python3-pip", "python3-venv", "git", "jq", "gawk", "sed",
    "grep", "findutils", "diffutils", "tar", "gzip", "bzip2", "xz-utils", "zip", "unzip", "sqlite3",
    "procps", "file", "make", "ca-certificates",
)

# Per-step time limits (seconds): a hung mirror or daemon must fail the build, not hang CI.
PULL_TIMEOUT_S = 300
DEBOOTSTRAP_TIMEOUT_S = 1200
BUILD_TIMEOUT_S = 1800


class ImageBuildError(RuntimeError):
    """An image could not be built. The message names the failing command and its output tail;
    `output` holds the command's whole output (a refusal that quotes only the tail can lose the
    line that says why)."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What `build_base_image` did: `path` is "cached", "registry" or "debootstrap"."""

    image: str
    path: str
    seconds: float


def default_image_name() -> str:
    """The base image name: $PIVOTRL_BASE_IMAGE or pivotrl/sandbox-base:latest."""
    return os.environ.get(IMAGE_ENV_VAR) or DEFAULT_IMAGE


# --------------------------------------------------------------------------- docker helpers


def _run(cmd: list[str], *, timeout: float, stdin: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capturing output; raise ImageBuildError with the output tail on failure."""
    logger.debug("$ %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, check=False, input=stdin, capture_output=True, timeout=timeout,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise ImageBuildError(f"{cmd[0]!r} is not installed; run sandboxes/provision_docker.sh "
                              f"(as root) to install docker.io and debootstrap") from e
    except subprocess.TimeoutExpired as e:
        raise ImageBuildError(f"`{' '.join(cmd[:4])} ...` ran longer than {timeout:.0f} s") from e
    if check and proc.returncode != 0:
        output = (proc.stdout + proc.stderr).decode(errors="replace")
        raise ImageBuildError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{output[-3000:]}", output)
    return proc


def docker_available() -> bool:
    """True when the docker CLI exists and a daemon answers."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], check=False, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=30).returncode == 0


def image_exists(name: str) -> bool:
    """True when `name` is present in the local image store."""
    return subprocess.run(["docker", "image", "inspect", name], check=False, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60).returncode == 0


def image_id(name: str) -> str | None:
    """The local image ID of `name` (None when absent): part of the content hash of derived images."""
    proc = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", name], check=False,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return (proc.stdout.decode().strip() or None) if proc.returncode == 0 else None


def image_present_or_pullable(name: str) -> bool:
    """True when `name` is local or `docker pull` fetches it. A failed pull (no registry) is False."""
    if image_exists(name):
        return True
    logger.info("image %s is not local; trying docker pull", name)
    try:
        proc = _run(["docker", "pull", name], timeout=PULL_TIMEOUT_S, check=False)
    except ImageBuildError as e:  # pull timed out: treat as unreachable
        logger.info("docker pull %s: %s", name, e)
        return False
    if proc.returncode != 0:
        logger.info("docker pull %s failed: %s", name,
                    proc.stderr.decode(errors="replace").strip().splitlines()[-1:])
        return False
    return True


def docker_build(context: Path, tag: str, *, dockerfile: Path | None = None,
                 build_args: dict[str, str] | None = None) -> None:
    """`docker build` with the given context/Dockerfile/args; raises ImageBuildError on failure.
    `--force-rm`: the classic builder keeps the container of a failed step (`Exited (1)`, one more
    on every retry) unless asked to remove intermediate containers always."""
    cmd = ["docker", "build", "--force-rm", "-t", tag]
    if dockerfile is not None:
        cmd += ["-f", str(dockerfile)]
    for key, value in (build_args or {}).items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd.append(str(context))
    started = time.monotonic()
    _run(cmd, timeout=BUILD_TIMEOUT_S)
    logger.info("docker build %s took %.1f s", tag, time.monotonic() - started)


# --------------------------------------------------------------------------- offline rootfs


def read_debian_mirror(paths: tuple[Path, ...] = (Path("/etc/apt/sources.list.d/debian.sources"),
                                                  Path("/etc/apt/sources.list"))) -> str:
    """The host's Debian mirror URL (the one apt uses here, so it is reachable), else the default.

    Reads the deb822 `URIs:` field or a one-line `deb URL suite ...` entry; security mirrors are
    skipped because debootstrap needs the main archive.
    """
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        candidates = re.findall(r"^\s*URIs:\s*(\S+)", text, flags=re.MULTILINE)
        candidates += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, flags=re.MULTILINE)
        for url in candidates:
            if "security" not in url:
                return url.rstrip("/")
    return DEFAULT_MIRROR


def build_rootfs_image(mirror: str | None = None, *, image: str = ROOTFS_IMAGE) -> None:
    """debootstrap a minimal bookworm with PACKAGES and `docker import` it as `image`."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is not installed and no registry answers: "
                              "`apt-get install -y debootstrap` (or run sandboxes/provision_docker.sh)")
    mirror = mirror or read_debian_mirror()
    rootfs = Path(tempfile.mkdtemp(prefix="pivotrl-rootfs-"))
    try:
        logger.info("debootstrap %s from %s into %s (takes about a minute)", DEBIAN_SUITE, mirror,
                    rootfs)
        started = time.monotonic()
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", DEBIAN_SUITE,
              str(rootfs), mirror], timeout=DEBOOTSTRAP_TIMEOUT_S)
        logger.info("debootstrap took %.1f s", time.monotonic() - started)
        # debootstrap leaves its downloaded .debs behind; they only bloat the image.
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        started = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
        try:
            imported = subprocess.run(["docker", "import", "-", image], check=False, stdin=tar.stdout,
                                      capture_output=True, timeout=BUILD_TIMEOUT_S)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar_rc = tar.wait()
        if tar_rc != 0 or imported.returncode != 0:
            raise ImageBuildError(f"tar | docker import {image} failed (tar exit {tar_rc}, docker "
                                  f"exit {imported.returncode}): "
                                  f"{imported.stderr.decode(errors='replace')[-2000:]}")
        logger.info("docker import %s took %.1f s", image, time.monotonic() - started)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


# --------------------------------------------------------------------------- base image

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _base_build_context(directory: Path) -> Path:
    """Fill `directory` with the base Dockerfile and the host CA bundle (empty file if none).

    A separate context keeps the host's certificates out of the repository and sends the daemon
    only the two files the build needs.
    """
    shutil.copyfile(BASE_DOCKERFILE, directory / "Dockerfile")
    bundle = directory / "host-ca-certificates.crt"
    if HOST_CA_BUNDLE.is_file():
        shutil.copyfile(HOST_CA_BUNDLE, bundle)
    else:
        bundle.write_bytes(b"")
    return directory


def build_base_image(image: str | None = None, *, force: bool = False,
                     registry_base: str = REGISTRY_BASE, mirror: str | None = None,
                     allow_registry: bool = True, rebuild_rootfs: bool = False) -> BuildReport:
    """Build the sandbox base image (default: $PIVOTRL_BASE_IMAGE or pivotrl/sandbox-base:latest).

    Skips when the image exists unless `force`. Uses `registry_base` when it is local or pullable,
    else a debootstrap rootfs, made only when missing or `rebuild_rootfs` (debootstrap is the slow
    part; the Dockerfile's apt step installs anything the rootfs lacks, so reusing it is safe).
    """
    image = image or default_image_name()
    started = time.monotonic()
    if not docker_available():
        raise ImageBuildError("no Docker daemon answers `docker info`; start one (as root: "
                              "sandboxes/provision_docker.sh) and retry")
    if image_exists(image) and not force:
        logger.info("image %s already exists; nothing to build (use --force to rebuild)", image)
        return BuildReport(image, "cached", time.monotonic() - started)
    if allow_registry and image_present_or_pullable(registry_base):
        path, base = "registry", registry_base
    else:
        path, base = "debootstrap", ROOTFS_IMAGE
        if rebuild_rootfs or not image_exists(ROOTFS_IMAGE):
            build_rootfs_image(mirror)
        else:
            logger.info("reusing the existing rootfs image %s", ROOTFS_IMAGE)
    logger.info("building %s FROM %s (%s path)", image, base, path)
    with tempfile.TemporaryDirectory(prefix="pivotrl-build-") as tmp:
        context = _base_build_context(Path(tmp))
        docker_build(context, image, dockerfile=context / "Dockerfile",
                     build_args={"BASE_IMAGE": base})
    report = BuildReport(image, path, time.monotonic() - started)
    logger.info("built %s via %s in %.1f s", image, path, report.seconds)
    return report


# --------------------------------------------------------------------------- task images

_FROM_RE = re.compile(
    r"^(?P<head>\s*FROM\s+(?:--\S+\s+)*)(?P<image>\S+)(?P<tail>(?:\s+AS\s+(?P<stage>\S+))?\s*)$",
    flags=re.IGNORECASE)
_ARG_RE = re.compile(r"^\s*ARG\s+(?P<name>\w+)(?:=(?P<value>\S*))?\s*$", flags=re.IGNORECASE)


def _expand_args(text: str, args: dict[str, str]) -> str:
    """Substitute $NAME / ${NAME} with ARG defaults (the subset of Dockerfile syntax FROM uses)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


# After a FROM that was replaced by the fallback base: `python` as well as `python3`, like python:3.x images.
PYTHON_SHIM = ('RUN command -v python >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1 '
               '|| ln -s "$(command -v python3)" /usr/local/bin/python')


def rewrite_missing_from(dockerfile_text: str, fallback_base: str,
                         is_available=image_present_or_pullable) -> tuple[str, list[str]]:
    """Return (new text, replaced image names): FROM images that are not available become
    `fallback_base` (`build_task_image` then adds PYTHON_SHIM). Stage names (`FROM builder`), `scratch` and available
    images are kept."""
    lines = dockerfile_text.splitlines(keepends=True)
    args: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    replaced: list[str] = []
    out: list[str] = []
    for line in lines:
        arg = _ARG_RE.match(line)
        if arg and not seen_from:  # only ARGs before the first FROM may parameterize FROM
            args[arg.group("name")] = (arg.group("value") or "").strip("\"'")
        match = _FROM_RE.match(line.rstrip("\n"))
        if match is None:
            out.append(line)
            continue
        seen_from = True
        image = _expand_args(match.group("image"), args)
        keep = (image.lower() == "scratch" or image in stages
                or ("$" not in image and is_available(image)))
        if match.group("stage"):
            stages.add(match.group("stage"))
        if keep:
            out.append(line)
            continue
        replaced.append(image)
        newline = "\n" if line.endswith("\n") else ""
        out.append(f"{match.group('head')}{fallback_base}{match.group('tail')}{newline}")
    return "".join(out), replaced


def add_python_shim(dockerfile_text: str, base: str) -> str:
    """PYTHON_SHIM after every `FROM base` line."""
    out = []
    for line in dockerfile_text.splitlines(keepends=True):
        out.append(line)
        match = _FROM_RE.match(line.rstrip("\n"))
        if match and match.group("image") == base:
            out.append(("" if line.endswith("\n") else "\n") + PYTHON_SHIM + "\n")
    return "".join(out)


_USER_RE = re.compile(r"^\s*USER\s+(\S+)", flags=re.IGNORECASE | re.MULTILINE)


def append_lines(dockerfile_text: str, lines: list[str]) -> str:
    """`dockerfile_text` with `lines` appended to its last stage, run as root (a `USER` the file set
    is restored afterwards)."""
    if not lines:
        return dockerfile_text
    users = _USER_RE.findall(dockerfile_text)
    text = dockerfile_text if dockerfile_text.endswith("\n") else dockerfile_text + "\n"
    block = ["# added by pivotrl: what the task's tests install, installed at build time", "USER root", *lines]
    if users and users[-1] not in ("root", "0"):
        block.append(f"USER {users[-1]}")
    return text + "\n".join(block) + "\n"


def build_task_image(dockerfile_dir: str | os.PathLike, tag: str,
                     fallback_base: str = DEFAULT_IMAGE, *, force: bool = False,
                     extra_lines: list[str] | tuple[str, ...] = ()) -> str:
    """Build the Dockerfile in `dockerfile_dir` (also the build context) as `tag`; return `tag`.

    FROM images that are neither local nor pullable (no registry here) are replaced by
    `fallback_base`, which must exist (build it with `python -m pivot_envs.images.build`). `extra_lines`
    are appended (see `append_lines`). Skips the build when `tag` exists unless `force`, so a tag
    that hashes everything the build reads (as the Harbor converter's does) caches the image.
    """
    context = Path(dockerfile_dir)
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageBuildError(f"no Dockerfile in {context}; a task image needs "
                              f"{context}/Dockerfile")
    if not force and image_exists(tag):
        logger.info("task image %s already exists", tag)
        return tag
    text, replaced = rewrite_missing_from(dockerfile.read_text(), fallback_base)
    if replaced:
        text = add_python_shim(text, fallback_base)
    text = append_lines(text, list(extra_lines))
    if not replaced and not extra_lines:
        docker_build(context, tag, dockerfile=dockerfile)
        return tag
    if replaced and not image_exists(fallback_base):
        raise ImageBuildError(f"{dockerfile}: FROM {', '.join(replaced)} cannot be pulled and the "
                              f"fallback base {fallback_base} is missing; build it with "
                              f"`{BUILD_COMMAND}`")
    if replaced:
        logger.warning("%s: FROM %s not available; building FROM %s instead", dockerfile,
                       ", ".join(replaced), fallback_base)
    # The rewritten Dockerfile lives outside the context so the task directory is left untouched.
    with tempfile.TemporaryDirectory(prefix="pivotrl-dockerfile-") as tmp:
        rewritten = Path(tmp) / "Dockerfile"
        rewritten.write_text(text)
        docker_build(context, tag, dockerfile=rewritten)
    return tag


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=BUILD_COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=None,
                        help=f"image name to build (default: ${IMAGE_ENV_VAR} or {DEFAULT_IMAGE})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    parser.add_argument("--rebuild-rootfs", action="store_true",
                        help="also redo the debootstrap rootfs (offline path; ~1 min)")
    parser.add_argument("--offline", action="store_true",
                        help="skip the registry and build from a debootstrap rootfs")
    parser.add_argument("--registry-base", default=REGISTRY_BASE,
                        help=f"registry image to build FROM when reachable (default {REGISTRY_BASE})")
    parser.add_argument("--mirror", default=None,
                        help="Debian mirror for debootstrap (default: the host's apt mirror)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        report = build_base_image(args.image, force=args.force, registry_base=args.registry_base,
                                  mirror=args.mirror, allow_registry=not args.offline,
                                  rebuild_rootfs=args.rebuild_rootfs)
    except ImageBuildError as e:
        logger.error("%s", e)
        return 1
    print(f"{report.image}: {report.path} ({report.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
