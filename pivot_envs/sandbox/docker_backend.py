"""The docker sandbox backend: one container per sandbox, `docker commit` snapshots.

Design (numbers measured on the 2-core dev machine, Docker 20.10, overlay2):

- A sandbox is a container running `sleep infinity` under docker's init (tini reaps the orphans
  that timed-out commands leave). Commands run with `docker exec`, ~50 ms each.
- `snapshot()` is `docker commit` (~0.1 s; the container is paused meanwhile) and its `ref` is the
  image id; `fork()` starts a container from that image; `release()` removes the image.
- Starting a container costs ~0.2 s (create 13 ms + start ~200 ms), above the 150 ms warm-reset
  goal. So the backend keeps a small pool of already started containers per recently forked image
  (`pool_size`, filled by one background thread): `fork()` takes a ready one when there is one
  (a pool hit, ~2 ms) and otherwise starts one synchronously (a miss). Hits and misses are counted
  in `backend.stats`.
- Every container and snapshot image carries the label `pivotrl=1`, the backend instance id and
  the creating process id, so `close()` removes exactly what this backend made, and
  `remove_stale()` can clean up after a process that died without closing (never touching the
  sandboxes of live processes that share the daemon).
- Output is capped inside the container (`head -c`, the rest drained to /dev/null), so a command
  that floods stdout costs CPU, not memory, and still reports its own exit code.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import dataclasses
import io
import json
import logging
import math
import os
import posixpath
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Mapping

from pivot_envs.errors import ImageNotFoundError, SandboxError, SandboxUnavailableError
from pivot_envs.sandbox.base import (
    ExecResult,
    FileEntry,
    Sandbox,
    SandboxBackend,
    SandboxLimits,
    Snapshot,
)
from pivot_envs.sandbox.volumes import VolumeFactory, loop_devices_backed_under

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "pivotrl/sandbox-base:latest"
IMAGE_ENV_VAR = "PIVOTRL_BASE_IMAGE"  # overrides the default image (same variable as the builder)
BUILD_COMMAND = "python -m sandboxes.build"

LABEL = "pivotrl"                   # "1" on everything this module creates
LABEL_BACKEND = "pivotrl.backend"   # the backend instance id
LABEL_PID = "pivotrl.pid"           # the creating process (for remove_stale)
LABEL_HOST = "pivotrl.host"
LABEL_SNAPSHOT = "pivotrl.snapshot"  # "1" on committed snapshot images
LABEL_POOL = "pivotrl.pool"          # "1" on containers started ahead by the fork pool

#: A container whose quota volume has less free space than this (or 1% of the quota) has filled it.
DISK_FULL_SLACK_BYTES = 1 << 20
#: Capabilities: none. Docker's default set (CHOWN, DAC_OVERRIDE, FOWNER, SETUID, KILL, NET_RAW,
#: MKNOD, ...) would let root in the container pass every permission check; the local backend gives
#: none either, so a command behaves the same on both.
CAP_DROP = ["ALL"]
#: no_new_privs for every process; Docker's default seccomp profile stays on (it is never disabled here).
SECURITY_OPT = ["no-new-privileges"]

# The container's PID 1: reaps orphans (the job Docker's tini did) and never exits on its own. PID 1
# gets no signal from inside its namespace unless it handles it, so `kill -9 -1` in a command kills
# every other process but not the sandbox (with tini, its child `sleep` died and the container with
# it). TERM from `docker stop` ends it; `docker rm -f` kills it from outside.
_KEEPALIVE_INIT = '$SIG{TERM} = sub { exit 0 }; while (1) { sleep 1 if wait() == -1 }'

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_MS_BIND, _MNT_DETACH = 0x1000, 0x2

# docker-py's HTTP read timeout must outlive the longest command (exec_start blocks until it ends).
CLIENT_TIMEOUT_S = 3600
MAX_EXEC_TIMEOUT_S = CLIENT_TIMEOUT_S - 60
# Internal commands (mkdir, manifest) get this much output before we call it a failure.
INTERNAL_OUTPUT_BYTES = 256 * 1024 * 1024
MANIFEST_TIMEOUT_S = 300.0

# Runs the user's command. Arguments: $1 command, $2 workdir, $3 time limit (s), $4 cap (bytes),
# $5 cap lifetime (s).
# - `timeout -k 1` enforces the wall-clock limit. It runs in its own process group; when it fires,
#   the whole group is then KILLed until empty, because processes caught mid-fork (a fork bomb
#   retrying under the pids limit) can miss timeout's TERM and outlive it.
# - stdout and stderr each go through a cap (perl: it is Essential in Debian, so in every image,
#   and one perl process is much cheaper than head + cat + timeout) that passes the first $4 bytes
#   on unbuffered and drains the rest: the command never sees SIGPIPE and its exit code survives,
#   and a flood costs CPU, not memory on our side.
# - The caps stop after $5 s (alarm), so a background process that still holds the output pipes
#   (`server &`) cannot hold the call past the time limit.
_EXEC_WRAPPER = r"""
cmd=$1 limit=$3 cap_bytes=$4 cap_seconds=$5
cd -- "$2" || exit 1
cap() {
  perl -e '$SIG{ALRM} = sub { exit 0 }; alarm $ARGV[1]; my $left = $ARGV[0];
    while (sysread(STDIN, my $buf, 65536)) {
      next if $left <= 0;
      my $part = substr($buf, 0, $left); $left -= length $part;
      while (length $part) { my $n = syswrite(STDOUT, $part) // exit 0; substr($part, 0, $n) = "" }
    }' "$cap_bytes" "$cap_seconds"
}
run() {
  timeout -k 1 "$limit" bash -c "$cmd" </dev/null & pid=$!
  wait "$pid"; rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    while kill -KILL -- "-$pid" 2>/dev/null; do sleep 0.05; done
  fi
  return "$rc"
}
{ { run 2>&1 1>&3 3>&- | cap >&2; exit "${PIPESTATUS[0]}"; } 3>&1 | cap; exit "${PIPESTATUS[0]}"; }
"""

# Walks the roots given as arguments and prints {path: [kind, mode, digest]} as JSON. Commands run
# without capabilities, so root in the container cannot read a file or list a dir whose owner bits
# forbid it (chmod 000): those paths are listed under "" and the backend reads them through the
# daemon (`get_archive`, done on the host side) instead.
_MANIFEST_SCRIPT = r"""
import hashlib, json, os, stat, sys
out = {}
unreadable = []
def entry(path):
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return ["link", mode, os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            unreadable.append(path)
        return ["dir", mode, ""]
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except PermissionError:
            unreadable.append(path)
            return ["file", mode, ""]
        return ["file", mode, h.hexdigest()]
    return ["other", mode, ""]
for root in sys.argv[1:]:
    if not os.path.lexists(root):
        continue
    out[root] = entry(root)
    if os.path.isdir(root) and not os.path.islink(root):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                out[path] = entry(path)
out[""] = unreadable
json.dump(out, sys.stdout)
"""


def _docker_module():
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailableError(
            "the docker sandbox backend needs the docker SDK: pip install 'pivotrl[docker]'") from e
    return docker


def _connect(timeout: float = CLIENT_TIMEOUT_S):
    """A docker client that has answered a ping, else SandboxUnavailableError saying what to do."""
    docker = _docker_module()
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:  # DockerException, requests errors, socket errors: all mean "no daemon"
        raise SandboxUnavailableError(
            f"no Docker daemon answers ({e.__class__.__name__}: {e}). Start one (as root: "
            f"sandboxes/provision_docker.sh) or set DOCKER_HOST; or use sandbox='local'") from e
    return client


def _owner_labels(backend_id: str) -> dict[str, str]:
    return {LABEL: "1", LABEL_BACKEND: backend_id, LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(client=None) -> dict[str, int]:
    """Remove containers and snapshot images left by pivotrl processes on this host that died
    without closing their backend. Resources of live processes are left alone (other engineers'
    and workers' sandboxes share the daemon). Returns {"containers": n, "images": m}."""
    client = client or _connect()
    host = socket.gethostname()

    def stale(labels: Mapping[str, str]) -> bool:
        if labels.get(LABEL_HOST) != host:
            return False
        try:
            return not _pid_alive(int(labels.get(LABEL_PID, "")))
        except ValueError:
            return False

    removed = {"containers": 0, "images": 0, "state_dirs": 0}
    docker = _docker_module()
    # Raw list calls (no per-object inspect): another process's reaper may remove the same
    # leftovers at the same moment, and an object that vanished in between is simply done.
    for row in client.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
        if stale(row.get("Labels") or {}):
            # The daemon unmounts a quota volume bound over the container's layer dir when it
            # deletes that dir; the loop device under it then frees itself (autoclear).
            try:
                client.api.remove_container(row["Id"], force=True, v=True)
                removed["containers"] += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                log.warning("stale container %s not removed: %s", row["Id"][:12], e)
    for row in client.api.images(filters={"label": f"{LABEL_SNAPSHOT}=1"}):
        if stale(row.get("Labels") or {}):
            try:
                client.api.remove_image(row["Id"], force=False, noprune=False)
                removed["images"] += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:  # in use by a container we did not remove: leave it
                log.warning("stale snapshot image %s not removed: %s", row["Id"][:19], e)
    removed["state_dirs"] = _sweep_stale_state_dirs(tempfile.gettempdir())
    return removed


def _sweep_stale_state_dirs(parent: str) -> int:
    """Delete the state dirs (volume templates) of docker backends whose process died."""
    count = 0
    for name in os.listdir(parent):
        if not name.startswith("pivotrl-docker-"):
            continue
        root = os.path.join(parent, name)
        try:
            with open(os.path.join(root, "owner.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(pid):
            continue
        for mount_point in _mounts_under(root):
            _libc.umount2(mount_point.encode(), _MNT_DETACH)
        shutil.rmtree(root, ignore_errors=True)
        count += 1
    return count


def _mounts_under(root: str) -> list[str]:
    prefix = root.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p == root or p.startswith(prefix)), key=len, reverse=True)


def _remove_container(container) -> None:
    """Kill and remove `container`, escalating; a container that is already gone is fine."""
    docker = _docker_module()
    try:
        container.remove(force=True, v=True)
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as e:
        log.warning("removing container %s failed (%s); killing it first", container.short_id, e)
    try:
        container.kill()
    except docker.errors.APIError:
        pass
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What a container is started from; pooled containers are interchangeable per spec."""

    image: str
    workdir: str
    limits: SandboxLimits


class DockerSandbox(Sandbox):
    """One running container. Created by `DockerBackend.create` / `fork`."""

    def __init__(self, backend: DockerBackend, container, spec: _Spec):
        self._backend = backend
        self.container = container
        self.workdir = spec.workdir
        self.limits = spec.limits
        self.image = spec.image
        self._closed = False
        #: host path of the container's quota volume (its overlay upper + work dirs), "" when none
        self.quota_mount = backend._quota_mounts.get(container.id, "")

    @property
    def id(self) -> str:
        return self.container.id

    # ------------------------------------------------------------------ exec

    def exec(self, cmd: str, timeout: float | None = None, *, workdir: str | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        limit = float(self.limits.timeout_s if timeout is None else timeout)
        if not 0 < limit <= MAX_EXEC_TIMEOUT_S:
            raise ValueError(f"exec timeout must be in (0, {MAX_EXEC_TIMEOUT_S}] s, got {limit}")
        cap = self.limits.output_bytes + 1  # one extra byte tells us whether it was cut
        argv = ["bash", "-c", _EXEC_WRAPPER, "pivotrl-exec", cmd, self._abspath(workdir or "."),
                f"{limit:.3f}", str(cap), str(math.ceil(limit) + 2)]
        started = time.monotonic()
        exit_code, out, err = self._run(argv, env=env)
        duration = time.monotonic() - started
        # `timeout` exits 124 (TERM worked) or 137 (needed KILL); a command may exit 124/137 on
        # its own (137 is also the OOM kill), so the elapsed time decides.
        timed_out = exit_code in (124, 137) and duration >= limit - 0.05
        truncated = len(out) >= cap or len(err) >= cap
        n = self.limits.output_bytes
        return ExecResult(exit_code=-1 if timed_out else exit_code,
                          stdout=out[:n].decode("utf-8", errors="replace"),
                          stderr=err[:n].decode("utf-8", errors="replace"),
                          timed_out=timed_out, truncated=truncated, duration_s=duration,
                          disk_full=self.disk_full())

    def disk_full(self) -> bool:
        """Whether the container's writable layer has (all but) used up its disk quota. False when
        the backend cannot enforce a quota on this daemon (`backend.disk_quota`)."""
        if not self.quota_mount:
            return False
        try:
            free, inodes = VolumeFactory.free_bytes(self.quota_mount)
        except OSError:
            return False
        return free < max(DISK_FULL_SLACK_BYTES, (self.limits.disk_mb << 20) // 100) or inodes == 0

    def _run(self, argv: list[str], *, env: Mapping[str, str] | None = None,
             workdir: str = "/") -> tuple[int, bytes, bytes]:
        """docker exec `argv`; return (exit code, stdout, stderr). Raises SandboxError when the
        container cannot run it (closed, dead, daemon gone): that is infrastructure, not a result.
        Runs from `/`, not the container's working dir: an action may delete that dir, and docker then
        cannot start any process there (the exec wrapper `cd`s into the command's own workdir)."""
        if self._closed:
            raise SandboxError("this sandbox is closed; fork or create a new one")
        docker = _docker_module()
        api = self._backend.client.api
        try:
            created = api.exec_create(self.container.id, argv, stdout=True, stderr=True,
                                      environment=dict(env) if env else None, workdir=workdir)
            out, err = api.exec_start(created["Id"], demux=True)
            exit_code = api.exec_inspect(created["Id"])["ExitCode"]
            for _ in range(50):  # the stream can end a moment before the exit code is recorded
                if exit_code is not None:
                    break
                time.sleep(0.01)
                exit_code = api.exec_inspect(created["Id"])["ExitCode"]
        except (docker.errors.DockerException, OSError) as e:  # OSError: requests' socket errors
            raise SandboxError(f"docker exec in container {self.container.short_id} failed: {e}. "
                               f"The container may have died (e.g. its init was OOM-killed); "
                               f"fork a new sandbox") from e
        if exit_code is None:
            raise SandboxError(f"docker exec in {self.container.short_id} ended without exit code")
        return exit_code, out or b"", err or b""

    def _internal(self, argv: list[str], what: str, timeout: float = 60.0) -> bytes:
        """Run a helper command of ours (not the user's); any failure is a SandboxError."""
        argv = ["timeout", "-k", "1", f"{timeout:.0f}", *argv]
        exit_code, out, err = self._run(argv)
        if exit_code != 0:
            raise SandboxError(f"{what} failed in container {self.container.short_id} (exit "
                               f"{exit_code}): {err.decode(errors='replace')[-1000:]}")
        if len(out) > INTERNAL_OUTPUT_BYTES:
            raise SandboxError(f"{what} printed more than {INTERNAL_OUTPUT_BYTES} bytes")
        return out

    # ------------------------------------------------------------------ files

    def _abspath(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.workdir, path))

    def read_file(self, path: str, *, _links_left: int = 40) -> bytes:
        docker = _docker_module()
        full = self._abspath(path)
        if self._closed:
            raise SandboxError("this sandbox is closed; fork or create a new one")
        try:
            stream, _stat = self.container.get_archive(full)
            archive = b"".join(stream)
        except docker.errors.NotFound as e:
            raise FileNotFoundError(f"{full}: no such file in sandbox {self.container.short_id}") from e
        except docker.errors.APIError as e:
            raise SandboxError(f"reading {full} from {self.container.short_id} failed: {e}") from e
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.next()
            if member is None:
                raise FileNotFoundError(full)
            if member.isdir():
                raise IsADirectoryError(full)
            if member.issym():
                # get_archive does not follow a final symlink; read its target instead.
                if _links_left <= 0:
                    raise OSError(f"{full}: too many levels of symbolic links")
                target = posixpath.join(posixpath.dirname(full), member.linkname)
                return self.read_file(target, _links_left=_links_left - 1)
            handle = tar.extractfile(member)
            if handle is None:
                raise SandboxError(f"{full} is not a regular file ({member.type!r})")
            return handle.read()

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        docker = _docker_module()
        full = self._abspath(path)
        parent, name = posixpath.split(full)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(payload))
        if self._closed:
            raise SandboxError("this sandbox is closed; fork or create a new one")
        try:
            try:
                self.container.put_archive(parent, buf.getvalue())
            except docker.errors.NotFound:  # parent directory missing: create it, retry once
                self._internal(["mkdir", "-p", "--", parent], f"mkdir -p {parent}")
                self.container.put_archive(parent, buf.getvalue())
        except docker.errors.APIError as e:
            raise SandboxError(f"writing {full} into {self.container.short_id} failed: {e}") from e

    # ------------------------------------------------------------------ state

    def snapshot(self, key: str = "") -> Snapshot:
        return self._backend._commit(self, key)

    def manifest(self, roots: tuple[str, ...] | None = None) -> dict[str, FileEntry]:
        paths = [self._abspath(r) for r in (roots or (self.workdir,))]
        raw = json.loads(self._internal(["python3", "-c", _MANIFEST_SCRIPT, *paths], "manifest",
                                        timeout=MANIFEST_TIMEOUT_S))
        unreadable = raw.pop("", [])
        out = {path: FileEntry(kind, mode, digest) for path, (kind, mode, digest) in raw.items()}
        for path in unreadable:
            out.update(self._manifest_via_daemon(path))
        return dict(sorted(out.items()))

    def _manifest_via_daemon(self, path: str) -> dict[str, FileEntry]:
        """Entries of `path` and below, read by the daemon (host side) as a tar stream."""
        import hashlib

        try:
            stream, _ = self.container.get_archive(path)
            data = b"".join(stream)
        except self._backend._docker.errors.APIError as e:
            raise SandboxError(f"reading {path} through the daemon for the manifest failed: {e}") from e
        out = {}
        parent = posixpath.dirname(path)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                full = posixpath.normpath(posixpath.join(parent, member.name))
                mode = member.mode & 0o7777
                if member.issym():
                    out[full] = FileEntry("link", mode, member.linkname)
                elif member.isdir():
                    out[full] = FileEntry("dir", mode, "")
                elif member.isfile():
                    handle = tar.extractfile(member)
                    out[full] = FileEntry("file", mode, hashlib.sha256(handle.read() if handle else b"").hexdigest())
                else:
                    out[full] = FileEntry("other", mode, "")
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._backend._remove_now(self.container)
        finally:
            self._backend._forget(self)


class DockerBackend(SandboxBackend):
    """Sandboxes as docker containers (see the module docstring for the design).

    Args:
        image: default image of `create()` (default: $PIVOTRL_BASE_IMAGE or
            pivotrl/sandbox-base:latest, built by `python -m sandboxes.build`).
        limits: default limits of every sandbox (`create(limits=...)` overrides per sandbox; a
            fork inherits the limits of the sandbox its snapshot came from).
        pool_size: started containers kept ready per recently forked snapshot (0: no pool).
        pool_images: how many snapshots get a pool at once (least recently forked ones lose it).
    """

    name = "docker"

    def __init__(self, image: str | None = None, limits: SandboxLimits | None = None,
                 pool_size: int = 2, pool_images: int = 8):
        self.client = _connect()
        self._docker = _docker_module()
        self.image = image or os.environ.get(IMAGE_ENV_VAR) or DEFAULT_IMAGE
        self.limits = limits or SandboxLimits()
        self.pool_size = max(0, int(pool_size))
        self.pool_images = max(1, int(pool_images))
        self.instance_id = uuid.uuid4().hex[:12]
        self.stats: collections.Counter[str] = collections.Counter()  # counts, and fork_seconds
        self._lock = threading.RLock()
        self._closed = False
        self._sandboxes: dict[str, DockerSandbox] = {}
        self._snapshots: dict[str, SandboxLimits] = {}  # image id -> limits of its source
        self._unremoved: set[str] = set()  # released snapshot images still in use; close() retries
        self._released: set[str] = set()   # refs of released snapshots (forks of them must fail)
        self._pool: collections.OrderedDict[_Spec, collections.deque] = collections.OrderedDict()
        self._wanted = threading.Event()   # the filler has work
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None
        self._quota_mounts: dict[str, str] = {}  # container id -> host dir its quota volume covers
        # A new backend first reaps what killed pivotrl processes left on this daemon.
        try:
            reaped = remove_stale(self.client)
            if reaped["containers"] or reaped["images"]:
                log.warning("removed what dead pivotrl processes left behind: %s", reaped)
        except (self._docker.errors.DockerException, OSError) as e:  # never fail a start over leftovers
            log.warning("could not reap stale pivotrl containers: %s", e)
        self.root = tempfile.mkdtemp(prefix=f"pivotrl-docker-{self.instance_id}-")
        with open(os.path.join(self.root, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.disk_quota, why = self._quota_supported()
        self.volumes = VolumeFactory(os.path.join(self.root, "V")) if self.disk_quota else None
        if not self.disk_quota:
            log.warning("docker backend: per-sandbox disk quota NOT enforced: %s", why)
        _LIVE_BACKENDS.add(self)

    def _quota_supported(self) -> tuple[bool, str]:
        """The disk quota binds a size-limited volume over each container's overlay2 layer dir (see
        `_attach_quota`), which needs the daemon's storage on this host and root. Docker's own
        `storage_opt size=` would need overlay2 on XFS with project quotas, which this kernel lacks."""
        try:
            info = self.client.info()
        except self._docker.errors.APIError as e:
            return False, f"docker info failed: {e}"
        root = os.path.join(info.get("DockerRootDir", "/var/lib/docker"), "overlay2")
        if info.get("Driver") != "overlay2":
            return False, f"storage driver {info.get('Driver')!r} (need overlay2)"
        if os.geteuid() != 0 or not os.path.isdir(root):
            return False, f"the daemon's {root} is not reachable as root from this process (remote daemon?)"
        return True, ""

    # ------------------------------------------------------------------ containers

    def _labels(self) -> dict[str, str]:
        return _owner_labels(self.instance_id)

    def _start(self, spec: _Spec, *, for_pool: bool = False):
        """Start a container for `spec` (synchronously, ~0.2 s)."""
        limits = spec.limits
        labels = self._labels()
        if for_pool:
            labels[LABEL_POOL] = "1"
        try:
            # create + start rather than `containers.run`: run() pulls a missing image, which
            # without a registry turns "image missing" into a slow, misleading 500 error.
            container = self.client.containers.create(
                spec.image, command=["perl", "-e", _KEEPALIVE_INIT], init=False,
                working_dir=spec.workdir, labels=labels,
                network_mode=None if limits.network else "none",
                mem_limit=f"{limits.memory_mb}m", memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9), pids_limit=limits.pids,
                cap_drop=CAP_DROP, security_opt=SECURITY_OPT, ipc_mode="private")
        except self._docker.errors.ImageNotFound as e:
            if spec.image in (DEFAULT_IMAGE, os.environ.get(IMAGE_ENV_VAR)):
                hint = f"build it with `{BUILD_COMMAND}` (or sandboxes/provision_docker.sh)"
            elif spec.image.startswith("sha256:"):
                hint = "it is a snapshot that was already released; take a new snapshot"
            else:
                hint = (f"build it (task images: sandboxes.build.build_task_image) or pull it; "
                        f"the base image comes from `{BUILD_COMMAND}`")
            raise ImageNotFoundError(f"docker image {spec.image!r} not found: {hint}") from e
        except self._docker.errors.APIError as e:
            raise SandboxError(f"creating a container from {spec.image} failed: {e}") from e
        try:
            if self.disk_quota:
                self._attach_quota(container, limits.disk_mb)
            container.start()
        except self._docker.errors.APIError as e:
            self._remove_now(container)
            raise SandboxError(f"starting a container from {spec.image} failed: {e}") from e
        except BaseException:
            self._remove_now(container)
            raise
        self.stats["containers_started"] += 1
        return container

    def _adopt(self, container, spec: _Spec) -> DockerSandbox:
        box = DockerSandbox(self, container, spec)
        with self._lock:
            if self._closed:
                self._remove_now(container)
                raise SandboxError("this docker backend is closed; make a new one")
            self._sandboxes[container.id] = box
        return box

    def _attach_quota(self, container, disk_mb: int) -> None:
        """Put the created (not yet started) container's writable layer on a volume of `disk_mb`
        MiB: a fresh ext4 volume gets a copy of the layer dir's few entries (empty diff/ and work/,
        the `link` and `lower` files) and is bind-mounted over that dir, so the overlay the daemon
        mounts at start has its upper dir there. A write past the quota fails with ENOSPC;
        `docker commit` reads the upper dir as usual; the daemon's removal of the layer dir
        unmounts the bind (and the loop device frees itself)."""
        data = container.attrs.get("GraphDriver", {})
        if data.get("Name") != "overlay2" or not data.get("Data", {}).get("UpperDir"):
            container.reload()
            data = container.attrs.get("GraphDriver", {})
        layer_dir = posixpath.dirname(data["Data"]["UpperDir"])
        assert self.volumes is not None
        mnt = self.volumes.create(container.id[:16], disk_mb)
        try:
            shutil.copytree(layer_dir, mnt, symlinks=True, dirs_exist_ok=True)
            if _libc.mount(mnt.encode(), layer_dir.encode(), None, _MS_BIND, None) != 0:
                raise SandboxError(f"binding the quota volume over {layer_dir} failed: "
                                   f"{os.strerror(ctypes.get_errno())}")
        finally:
            # Only the bind over the layer dir stays; the image is open by the loop device.
            VolumeFactory.unmount(mnt)
            os.unlink(mnt + ".img")
            os.rmdir(mnt)
        with self._lock:
            self._quota_mounts[container.id] = layer_dir

    def _remove_now(self, container) -> None:
        """Remove `container` and wait for it (when this returns, its processes and mounts are gone)."""
        _remove_container(container)
        with self._lock:
            layer_dir = self._quota_mounts.pop(container.id, None)
        if layer_dir:
            _libc.umount2(layer_dir.encode(), _MNT_DETACH)  # normally the daemon did it already

    def flush_removals(self) -> None:
        """Kept for callers of the former background removal: `close()` now removes synchronously."""

    def _forget(self, box: DockerSandbox) -> None:
        with self._lock:
            self._sandboxes.pop(box.container.id, None)

    def _sandbox_for(self, spec: _Spec, *, pooled: bool) -> DockerSandbox:
        """A running sandbox for `spec`: from the pool when `pooled` and one is ready, else
        started now. Only forks are pooled: a snapshot is forked again and again (G rollouts
        per pivot state), while `create()` specs are mostly one-offs whose pool would be waste."""
        if self._closed:
            raise SandboxError("this docker backend is closed; make a new one")
        container = None
        if pooled and self.pool_size:
            with self._lock:
                ready = self._pool.get(spec)
                if ready is None:
                    ready = self._pool[spec] = collections.deque()
                self._pool.move_to_end(spec)
                while len(self._pool) > self.pool_images:  # drop the coldest image's pool
                    _, cold = self._pool.popitem(last=False)
                    self._drain(cold)
                if ready:
                    container = ready.popleft()
            self.stats["pool_hits" if container is not None else "pool_misses"] += 1
            self._ensure_filler()
            self._wanted.set()
        if container is None:
            container = self._start(spec)
        return self._adopt(container, spec)

    # ------------------------------------------------------------------ pool

    def _ensure_filler(self) -> None:
        with self._lock:
            if self._filler is None and not self._closed:
                self._filler = threading.Thread(target=self._fill_loop, daemon=True,
                                                name=f"pivotrl-docker-pool-{self.instance_id}")
                self._filler.start()

    def _next_shortfall(self) -> _Spec | None:
        """The most recently used spec whose pool is not full, or None."""
        with self._lock:
            for spec in reversed(self._pool):
                if len(self._pool[spec]) < self.pool_size:
                    return spec
        return None

    def _fill_loop(self) -> None:
        """Background thread: keep every pooled spec at `pool_size` started containers."""
        while not self._stopping.is_set():
            self._wanted.wait(timeout=1.0)
            self._wanted.clear()
            while not self._stopping.is_set():
                spec = self._next_shortfall()
                if spec is None:
                    break
                try:
                    container = self._start(spec, for_pool=True)
                except Exception as e:  # noqa: BLE001 - image released meanwhile, daemon hiccup: stop filling it
                    log.debug("pool: cannot start a container for %s: %s", spec.image, e)
                    with self._lock:
                        self._pool.pop(spec, None)
                    continue
                with self._lock:
                    queue = self._pool.get(spec)
                    if self._closed or queue is None or len(queue) >= self.pool_size:
                        queue = None
                    else:
                        queue.append(container)
                if queue is None:  # nobody wants it any more
                    self._remove_now(container)
                    if spec.image in self._unremoved:  # its release waited for this container
                        self._remove_image(spec.image)

    def _drain(self, queue: collections.deque) -> None:
        while queue:
            self._remove_now(queue.popleft())

    def warm(self, snapshot: Snapshot) -> None:
        """Ask the pool to start containers for `snapshot` ahead of the first fork."""
        if not self.pool_size:
            return
        spec = self._spec_for(snapshot)
        with self._lock:
            self._pool.setdefault(spec, collections.deque())
            self._pool.move_to_end(spec)
        self._ensure_filler()
        self._wanted.set()

    # ------------------------------------------------------------------ contract

    max_exec_timeout_s = MAX_EXEC_TIMEOUT_S

    def image_identity(self, image: str | None) -> str:
        """The image ID `image` (default: the backend's image) names now, so that snapshots of an image
        rebuilt under the same tag are not served for the new one; the name when it is missing
        (`create` then says so)."""
        name = image or self.image
        try:
            return str(self.client.api.inspect_image(name)["Id"])
        except self._docker.errors.ImageNotFound:
            return name

    def create(self, image: str | None = None, *, workdir: str = "/app",
               limits: SandboxLimits | None = None) -> DockerSandbox:
        return self._sandbox_for(_Spec(image or self.image, workdir, limits or self.limits),
                                 pooled=False)

    def _spec_for(self, snapshot: Snapshot) -> _Spec:
        if snapshot.backend != self.name:
            raise ValueError(f"snapshot of backend {snapshot.backend!r} given to the docker backend")
        with self._lock:
            if snapshot.ref in self._released:
                raise ImageNotFoundError(f"snapshot {snapshot.ref[:19]} was already released; "
                                         f"take a new snapshot")
            limits = self._snapshots.get(snapshot.ref, self.limits)
        return _Spec(snapshot.ref, snapshot.workdir, limits)

    def fork(self, snapshot: Snapshot) -> DockerSandbox:
        started = time.monotonic()
        box = self._sandbox_for(self._spec_for(snapshot), pooled=True)
        self.stats["forks"] += 1
        self.stats["fork_seconds"] += time.monotonic() - started  # type: ignore[assignment]
        return box

    def _commit(self, box: DockerSandbox, key: str) -> Snapshot:
        labels = {**self._labels(), LABEL_SNAPSHOT: "1"}
        try:
            image = box.container.commit(conf={"Labels": labels})
        except self._docker.errors.APIError as e:
            raise SandboxError(f"docker commit of {box.container.short_id} failed: {e}") from e
        with self._lock:
            self._snapshots[image.id] = box.limits
        self.stats["snapshots"] += 1
        return Snapshot(backend=self.name, ref=image.id, workdir=box.workdir, key=key)

    def release(self, snapshot: Snapshot) -> None:
        with self._lock:
            if snapshot.ref in self._released:
                return
            spec = self._spec_for(snapshot)
            # Remembered so that a fork after release fails the same way whether or not the
            # image could be removed yet (a live fork or an in-flight pool start keeps it).
            self._released.add(snapshot.ref)
            queue = self._pool.pop(spec, None)
            self._snapshots.pop(snapshot.ref, None)
        if queue:
            self._drain(queue)
        self._remove_image(snapshot.ref)

    def _remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=False, noprune=False)
        except self._docker.errors.ImageNotFound:
            pass
        except self._docker.errors.APIError as e:
            # In use by a live fork (HTTP 409): removing it by force would break that sandbox,
            # so it is kept and `close()` removes it once the forks are gone.
            log.debug("snapshot %s kept for now: %s", ref[:19], e)
            with self._lock:
                self._unremoved.add(ref)
        else:
            with self._lock:
                self._unremoved.discard(ref)

    def close(self) -> None:
        """Stop the pool, remove every container and snapshot image this backend created."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._wanted.set()
        try:
            if self._filler is not None:
                self._filler.join(timeout=30)
        finally:
            with self._lock:
                queues = list(self._pool.values())
                self._pool.clear()
                boxes = list(self._sandboxes.values())
                snapshots = list(self._snapshots) + sorted(self._unremoved)
                self._snapshots.clear()
                self._unremoved.clear()
            for ready in queues:
                self._drain(ready)
            for box in boxes:
                box.close()
            # Anything a crashed code path left behind still carries our instance label.
            try:
                leftovers = self.client.containers.list(
                    all=True, filters={"label": f"{LABEL_BACKEND}={self.instance_id}"})
            except self._docker.errors.APIError as e:
                log.warning("could not list leftover containers: %s", e)
                leftovers = []
            for container in leftovers:
                self._remove_now(container)
            for ref in snapshots:
                self._remove_image(ref)
            shutil.rmtree(self.root, ignore_errors=True)
            _LIVE_BACKENDS.discard(self)

    def _owned_container_rows(self) -> list[dict]:
        """This backend's containers as the list API returns them (id + labels, no per-container
        inspect: a container being removed in the background may vanish between list and inspect)."""
        return self.client.api.containers(all=True, filters={"label": f"{LABEL_BACKEND}={self.instance_id}"})

    def live_containers(self) -> list[str]:
        """Ids of all containers this backend owns right now, pooled ones included."""
        return [row["Id"] for row in self._owned_container_rows()]

    def live_resources(self) -> list[str]:
        """The containers behind this backend's sandboxes ("container:<id>"), for leak checks:
        empty once every sandbox is closed. Containers waiting in the fork pool are a cache, not
        sandboxes, and are left out (the pool refills in the background at any moment);
        `close()` removes them."""
        rows = self._owned_container_rows()
        with self._lock:
            tracked = set(self._sandboxes)
        pooled = {row["Id"] for row in rows
                  if row["Id"] not in tracked and (row.get("Labels") or {}).get(LABEL_POOL) == "1"}
        # Quota volumes' loop devices whose container is gone (their images are deleted but named
        # after the container): a removed container's device frees itself a moment after removal.
        names = {row["Id"][:16] for row in rows}
        deadline = time.monotonic() + 2.0
        while True:
            loops = [dev for dev, image in loop_devices_backed_under(self.root).items()
                     if posixpath.basename(image).removesuffix(".img") not in names]
            if not loops or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return sorted([f"container:{row['Id']}" for row in rows if row["Id"] not in pooled]
                      + [f"loop:{dev}" for dev in loops])


_LIVE_BACKENDS: weakref.WeakSet[DockerBackend] = weakref.WeakSet()


@atexit.register
def _close_live_backends() -> None:
    """Safety net: a process that forgets `backend.close()` still leaves no containers behind."""
    for backend in list(_LIVE_BACKENDS):
        try:
            backend.close()
        except Exception as e:  # noqa: BLE001 - at exit, log and go on with the next one
            log.warning("closing docker backend %s at exit failed: %s", backend.instance_id, e)


if __name__ == "__main__":
    # `python -m pivot_envs.sandbox.docker_backend` removes what dead pivotrl processes left behind.
    logging.basicConfig(level=logging.INFO)
    print(remove_stale())
