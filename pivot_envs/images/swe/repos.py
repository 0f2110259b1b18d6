"""The SWE repositories: real pure-Python projects taken as source distributions from PyPI, one
docker image per repository.

`REPOS` is the registry (name, pinned version, where the package and its tests live). For each one
`build_repo_image(spec)`:

1. fetches the sdist on the host (`pip download --no-binary :all: --no-deps`) into the cache
   (`$PIVOTRL_CACHE/swe/sdists`, default `~/.cache/pivotrl/swe/sdists`) unless it is there;
2. fetches the test dependencies as wheels on the host (`pip download`, same cache), so that the
   image build needs no network (pip in the build would also need the host CA bundle);
3. builds `repo.Dockerfile` FROM the sandbox base image: the sources under `/testbed` as a git
   repository with one base commit (fixed author and date, so its id depends only on the sources),
   pytest installed. Containers never need the network.

Images are cached: nothing is built when the tag exists (unless `force`).

Adding a repository = one `RepoSpec` line (see the README, "SWE repositories").
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pivot_envs.images.build import (
    BUILD_COMMAND,
    DEFAULT_IMAGE,
    ImageBuildError,
    docker_build,
    image_exists,
    image_id,
)

logger = logging.getLogger(__name__)

DOCKERFILE = Path(__file__).resolve().parent / "repo.Dockerfile"
IMAGE_PREFIX = "pivotrl/swe-"
TEST_DEPENDENCIES = ("pytest==8.3.5", "pytest-timeout==2.3.1")
DOWNLOAD_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class RepoSpec:
    """One repository.

    Attributes:
        name: PyPI project name (also the image suffix and the instance-id prefix).
        version: pinned release; its sdist is what `/testbed` holds.
        package_dirs: where the library's own modules live, relative to /testbed (mutations go there).
        test_paths: what pytest runs (relative to /testbed).
        pythonpath: extra import path inside the container (src layouts), relative to /testbed.
        test_dependencies: wheels installed besides pytest (pure-Python, fetched on the host).
        url: the project's home (SWE-bench's `repo` field names it as owner/name).
    """

    name: str
    version: str
    package_dirs: tuple[str, ...]
    test_paths: tuple[str, ...]
    github: str
    pythonpath: str = ""
    test_dependencies: tuple[str, ...] = ()

    @property
    def image(self) -> str:
        return f"{IMAGE_PREFIX}{self.name}:{self.version}"

    @property
    def sdist_name(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    def test_command(self, tests: list[str] | tuple[str, ...] | None = None, timeout_s: float = 20.0) -> str:
        """The pytest command that prints one `PASSED/FAILED/ERROR <nodeid>` line per test (`-rA`).
        A per-test timeout (pytest-timeout) turns a hanging test into a FAILED one."""
        targets = " ".join(_quote(t) for t in (tests or self.test_paths))
        return (f"python3 -m pytest -rA -q -p no:cacheprovider --color=no --tb=short "
                f"--timeout={timeout_s:g} {targets}")


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


REPOS: dict[str, RepoSpec] = {spec.name: spec for spec in (
    RepoSpec("toolz", "1.2.0", ("toolz",), ("toolz/tests",), "pytoolz/toolz"),
    RepoSpec("tabulate", "0.10.0", ("tabulate",), ("test",), "astanin/python-tabulate"),
    RepoSpec("inflection", "0.5.1", ("inflection",), ("test_inflection.py",), "jpvanhal/inflection"),
    RepoSpec("cachetools", "8.0.2", ("src/cachetools",), ("tests",), "tkem/cachetools", pythonpath="src"),
    RepoSpec("boltons", "26.2.0", ("boltons",), ("tests",), "mahmoud/boltons"),
)}


def cache_dir() -> Path:
    """$PIVOTRL_CACHE/swe or ~/.cache/pivotrl/swe."""
    root = os.environ.get("PIVOTRL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pivotrl")
    return Path(root) / "swe"


def _pip_download(args: list[str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "-d", str(dest), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as e:
        raise ImageBuildError(f"`pip download {' '.join(args)}` ran past {DOWNLOAD_TIMEOUT_S} s") from e
    if proc.returncode != 0:
        raise ImageBuildError(f"`pip download {' '.join(args)}` failed (is PyPI reachable?):\n"
                              f"{(proc.stdout + proc.stderr)[-2000:]}")


def fetch_sdist(spec: RepoSpec) -> Path:
    """The sdist of `spec` in the cache, downloaded from PyPI when missing."""
    dest = cache_dir() / "sdists"
    path = dest / spec.sdist_name
    if not path.is_file():
        logger.info("downloading the sdist of %s %s", spec.name, spec.version)
        _pip_download(["--no-binary", ":all:", "--no-deps", f"{spec.name}=={spec.version}"], dest)
    if not path.is_file():
        found = sorted(p.name for p in dest.glob(f"{spec.name}-*"))
        raise ImageBuildError(f"pip downloaded no {spec.sdist_name} (found {found}); check the version")
    return path


def fetch_test_wheels(spec: RepoSpec) -> Path:
    """A folder with the wheels of pytest and the repository's test dependencies (cached)."""
    reqs = sorted(TEST_DEPENDENCIES + spec.test_dependencies)
    dest = cache_dir() / "wheels" / "-".join(r.replace("==", "_") for r in reqs)
    if not (dest / ".complete").is_file():
        logger.info("downloading test wheels %s", reqs)
        _pip_download(["--only-binary", ":all:", "--python-version", "3.11", *reqs], dest)
        (dest / ".complete").write_text("\n".join(reqs) + "\n")
    return dest


def build_repo_image(spec: RepoSpec, *, base_image: str = DEFAULT_IMAGE, force: bool = False) -> str:
    """Build (or find cached) the image of `spec`; return its tag."""
    if not force and image_exists(spec.image):
        return spec.image
    if not image_exists(base_image):
        raise ImageBuildError(f"the sandbox base image {base_image} is missing; build it with "
                              f"`{BUILD_COMMAND}`")
    sdist = fetch_sdist(spec)
    wheels = fetch_test_wheels(spec)
    with tempfile.TemporaryDirectory(prefix="pivotrl-swe-build-") as tmp:
        context = Path(tmp)
        shutil.copyfile(DOCKERFILE, context / "Dockerfile")
        shutil.copyfile(sdist, context / "source.tar.gz")
        (context / "wheels").mkdir()
        for whl in wheels.glob("*.whl"):
            shutil.copyfile(whl, context / "wheels" / whl.name)
        pythonpath = f"/testbed/{spec.pythonpath}" if spec.pythonpath else ""
        docker_build(context, spec.image, dockerfile=context / "Dockerfile",
                     build_args={"BASE_IMAGE": base_image, "PYTHONPATH_EXTRA": pythonpath})
    return spec.image


def build_all(names: list[str] | None = None, *, force: bool = False) -> list[str]:
    """Build the images of `names` (default: every repository in REPOS)."""
    unknown = sorted(set(names or []) - set(REPOS))
    if unknown:
        raise ValueError(f"unknown repositories {unknown}; known: {sorted(REPOS)}")
    return [build_repo_image(REPOS[n], force=force) for n in (names or list(REPOS))]


CHECKOUT_DOCKERFILE = Path(__file__).resolve().parent / "checkout.Dockerfile"
# The one commit of a checkout image: a fixed author, date and message, so that its id is a function of
# the tree alone (the same identity checkout.Dockerfile gives the container's git).
_COMMIT_ENV = {"GIT_AUTHOR_NAME": "pivotrl", "GIT_AUTHOR_EMAIL": "pivotrl@localhost", "GIT_COMMITTER_NAME": "pivotrl",
               "GIT_COMMITTER_EMAIL": "pivotrl@localhost", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
               "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
CHECKOUT_COMMIT_MESSAGE = "base: the instance's base commit, without history"


@dataclasses.dataclass(frozen=True)
class CheckoutImage:
    """An image built from a local checkout. `/testbed` holds the tree of `source_commit` as the
    only commit, `base_commit` (a new id: the instance's base commit in the image)."""

    tag: str
    base_commit: str
    source_commit: str


def _git(args: list[str], cwd: Path, what: str, *, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=DOWNLOAD_TIMEOUT_S, check=False, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise ImageBuildError(f"{what}: `git {' '.join(args)}` in {cwd} failed: {(proc.stdout + proc.stderr)[-1000:]}")
    return proc.stdout.strip()


def single_commit_tree(checkout: Path, commit: str, dest: Path) -> str:
    """Write the tree of `commit` in the git checkout `checkout` to `dest` as a new repository whose
    only commit holds it, and return that commit's id.

    Why: a copy of the checkout with its .git let the agent read the fix (`git log --all`, later
    commits, other branches). Only the committed tree is taken (`git archive`), not uncommitted or
    ignored files of the checkout; the commit id depends on the tree alone (`_COMMIT_ENV`)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=checkout, capture_output=True,
                             stdin=subprocess.DEVNULL, timeout=DOWNLOAD_TIMEOUT_S, check=False)
    if archive.returncode != 0:
        raise ImageBuildError(f"{checkout}: commit {commit!r} cannot be exported (is it in this checkout's history?): "
                              f"{archive.stderr.decode(errors='replace')[-500:]}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="tar")
    what = f"making the single-commit tree of {checkout}@{commit}"
    _git(["init", "-q", "-b", "main"], dest, what, env=_COMMIT_ENV)
    (dest / ".git" / "info" / "exclude").write_text("__pycache__/\n*.pyc\n.pytest_cache/\n")
    _git(["add", "-A", "-f", "."], dest, what, env=_COMMIT_ENV)  # -f: a tracked file its .gitignore names stays
    _git(["commit", "-q", "--no-verify", "-m", CHECKOUT_COMMIT_MESSAGE], dest, what, env=_COMMIT_ENV)
    return _git(["rev-parse", "HEAD"], dest, what)


def checkout_image_tag(checkout: Path, commit: str, *, name: str, base_image: str = DEFAULT_IMAGE,
                       test_dependencies: tuple[str, ...] = ()) -> str:
    """`pivotrl/swe-checkout-NAME:HASH`, HASH over everything the image is made of: the tree of
    `commit`, the test dependencies, the Dockerfile and the base image's ID. Tagged by the name alone,
    an image built from an earlier checkout was silently reused after the checkout changed."""
    tree = _git(["rev-parse", f"{commit}^{{tree}}"], checkout, f"reading {checkout}@{commit}")
    h = hashlib.sha256("\0".join([tree, *sorted(TEST_DEPENDENCIES + test_dependencies), CHECKOUT_DOCKERFILE.read_text(),
                                  CHECKOUT_COMMIT_MESSAGE, image_id(base_image) or base_image]).encode())
    slug = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.")[:100] or "checkout"
    return f"pivotrl/swe-checkout-{slug}:{h.hexdigest()[:12]}"


def build_checkout_image(checkout: Path, *, base_commit: str = "HEAD", name: str | None = None,
                         base_image: str = DEFAULT_IMAGE, test_dependencies: tuple[str, ...] = (),
                         force: bool = False) -> CheckoutImage:
    """Build (or reuse) an image whose /testbed is the tree of `base_commit` of the local git checkout
    `checkout` as a single commit (no history), with pytest installed. The tag hashes what the image
    holds (`checkout_image_tag`), so a changed checkout gets a new image."""
    checkout = Path(checkout)
    if not (checkout / ".git").exists():
        raise ImageBuildError(f"{checkout} is not a git checkout (no .git); clone the repository first")
    source = _git(["rev-parse", "--verify", f"{base_commit}^{{commit}}"], checkout,
                  f"{checkout}: base commit {base_commit!r} is not in this checkout")
    tag = checkout_image_tag(checkout, source, name=name or checkout.name, base_image=base_image,
                             test_dependencies=test_dependencies)
    with tempfile.TemporaryDirectory(prefix="pivotrl-swe-checkout-") as tmp:
        context = Path(tmp)
        new_base = single_commit_tree(checkout, source, context / "testbed")
        if force or not image_exists(tag):
            spec = RepoSpec(checkout.name, "checkout", (), (), "", test_dependencies=test_dependencies)
            wheels = fetch_test_wheels(spec)
            shutil.copyfile(CHECKOUT_DOCKERFILE, context / "Dockerfile")
            (context / "wheels").mkdir()
            for whl in wheels.glob("*.whl"):
                shutil.copyfile(whl, context / "wheels" / whl.name)
            docker_build(context, tag, dockerfile=context / "Dockerfile", build_args={"BASE_IMAGE": base_image})
    return CheckoutImage(tag, new_base, source)


_ENSURED: set[str] = set()


def ensure_image(image: str) -> None:
    """Build `image` when it is one of REPOS' images and missing (once per process); other images are
    the user's to provide."""
    if image in _ENSURED:
        return
    for spec in REPOS.values():
        if spec.image == image:
            build_repo_image(spec)
            break
    _ENSURED.add(image)
