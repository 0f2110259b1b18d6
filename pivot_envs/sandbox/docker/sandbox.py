"""One docker sandbox: a running container; commands through `docker exec` and the exec wrapper
(exec_wrapper.sh), files through the daemon's archive API, manifests by manifest_walk.py run inside.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import posixpath
import struct
import tarfile
import time
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

from pivot_envs.errors import SandboxError, SandboxLostError
from pivot_envs.sandbox import host
from pivot_envs.sandbox.base import (
    ExecResult,
    FileEntry,
    Sandbox,
    SandboxLimits,
    Snapshot,
)
from pivot_envs.sandbox.docker.reaper import CLIENT_TIMEOUT_S, docker_module

if TYPE_CHECKING:
    from pivot_envs.sandbox.docker.backend import DockerBackend

MAX_EXEC_TIMEOUT_S = CLIENT_TIMEOUT_S - 60
# Internal commands (mkdir, manifest) get this much output before we call it a failure.
INTERNAL_OUTPUT_BYTES = 256 * 1024 * 1024
MANIFEST_TIMEOUT_S = 300.0

# The scripts run inside the container, kept as package files so that linters see them.
_EXEC_WRAPPER = resources.files("pivot_envs.sandbox.docker").joinpath("exec_wrapper.sh").read_text()
_FRAME_HEADER = struct.Struct(">BxxxL")  # docker's multiplexed stream: stream id, 3 pad bytes, payload size
_MANIFEST_SCRIPT = resources.files("pivot_envs.sandbox.docker").joinpath("manifest_walk.py").read_text()


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a container is started from; pooled containers are interchangeable per spec."""

    image: str
    workdir: str
    limits: SandboxLimits


def _exec_output(api, exec_id: str) -> tuple[bytes, bytes]:
    """Start exec `exec_id` attached and read its multiplexed output: (stdout, stderr).

    Not `api.exec_start(demux=True)`: docker-py reads the hijacked connection's raw socket, past the
    buffered reader that parsed the HTTP headers, so output frames that arrived together with the
    headers are skipped. Under load that happened (the soak test, docker backend): frames misaligned
    ("47 is not a valid stream", docker/docker-py#3160) or a command's first output missing, which the
    verifier then judged as "different output". Reading the frames through that buffered reader keeps
    every byte. A stream that ends inside a frame or names no stream is a lost sandbox (masked), never
    a result."""
    res = api._post_json(api._url("/exec/{0}/start", exec_id), headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                         data={"Tty": False, "Detach": False}, stream=True)
    try:
        api._raise_for_status(res)
        reader = res.raw._fp.fp  # the BufferedReader over the connection, holding what came with the headers
        streams: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        while True:
            header = reader.read(_FRAME_HEADER.size)
            if not header:
                break
            if len(header) < _FRAME_HEADER.size:
                raise SandboxLostError(f"exec output ended inside a frame header ({len(header)} bytes)")
            stream, size = _FRAME_HEADER.unpack(header)
            if stream not in streams:
                raise SandboxLostError(f"exec output frame names stream {stream}, not stdout or stderr")
            payload = reader.read(size)
            if len(payload) < size:
                raise SandboxLostError(f"exec output ended inside a frame ({len(payload)} of {size} bytes)")
            streams[stream] += payload
        return bytes(streams[1]), bytes(streams[2])
    finally:
        res.close()


class DockerSandbox(Sandbox):
    """One running container. Created by `DockerBackend.create` / `fork`."""

    def __init__(self, backend: DockerBackend, container, spec: Spec):
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

    def lost_to_outside(self, settle_s: float = 2.0) -> bool:
        """The container is gone, or stopped by SIGKILL (exit 137) without an OOM kill: its PID 1
        ignores SIGKILL from inside its PID namespace, so only the host (`docker kill`, `docker rm
        -f`) stops it that way. A command's own `kill 1` (TERM) stops it with exit 0: the action's fault.
        Asked right after a failed exec, a container being killed may still read as running (an exec
        then fails with 126 before the state changes: seen in the soak test), so a running one is
        watched for up to `settle_s` (only failed verdicts pay it)."""
        docker = docker_module()
        deadline = time.monotonic() + settle_s
        while True:
            try:
                state = self._backend.client.api.inspect_container(self.container.id)["State"]
            except docker.errors.NotFound:
                return True
            except (docker.errors.DockerException, OSError):
                return False  # the daemon does not answer: the caller's health probe tells
            if not state.get("Running"):
                return not state.get("OOMKilled") and state.get("ExitCode") == 137
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def disk_full(self) -> bool:
        """Whether the container's writable layer has (all but) used up its disk quota. False when
        the backend cannot enforce a quota on this daemon (`backend.disk_quota`)."""
        if not self.quota_mount:
            return False
        try:
            return host.disk_full(self.quota_mount, self.limits.disk_mb)
        except OSError:
            return False

    def _run(self, argv: list[str], *, env: Mapping[str, str] | None = None,
             workdir: str = "/") -> tuple[int, bytes, bytes]:
        """docker exec `argv`; return (exit code, stdout, stderr). Raises SandboxError when the
        container cannot run it (closed, dead, daemon gone): that is infrastructure, not a result.
        Runs from `/`, not the container's working dir: an action may delete that dir, and docker then
        cannot start any process there (the exec wrapper `cd`s into the command's own workdir)."""
        if self._closed:
            raise SandboxError("this sandbox is closed; fork or create a new one")
        docker = docker_module()
        api = self._backend.client.api
        try:
            created = api.exec_create(self.container.id, argv, stdout=True, stderr=True,
                                      environment=dict(env) if env else None, workdir=workdir)
            out, err = _exec_output(api, created["Id"])
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
        docker = docker_module()
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
        docker = docker_module()
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

    def close(self, wait: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if wait:
                self._backend._remove_now(self.container)
            else:
                self._backend._remove_later(self.container)
        finally:
            self._backend._forget(self)
