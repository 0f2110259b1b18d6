"""The sandbox contract shared by every backend (docker, local, and those registered from outside:
see registry.py).

A sandbox is an isolated place to run shell commands with a working directory (default `/app`)
whose state persists between commands. `snapshot()` freezes the current state into an immutable
`Snapshot`; `backend.fork(snapshot)` starts a new, independent sandbox from it. Forks never see each
other's writes. Every command runs under the limits in `SandboxLimits`; a command that runs past its
time limit is a *result* (`timed_out=True`), not an exception.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Self

#: Docker's default capability allow-list: what root in a real task image holds under `docker run`
#: (chown, setuid/setgid, permission override, ...). None of CAP_SYS_ADMIN, NET_ADMIN, SYS_PTRACE,
#: SYS_MODULE, SYS_RAWIO, SYS_TIME, DAC_READ_SEARCH, BPF, ... is in it.
ROOT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
             "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """Resource limits applied to every sandbox of a backend.

    Attributes:
        cpus: CPU share (1.0 = one core).
        memory_mb: memory limit in MiB (the command is OOM-killed above it).
        pids: maximum number of processes/threads (fork bombs stop here).
        timeout_s: default wall-clock limit of one `exec`.
        output_bytes: stdout and stderr are each truncated to this many bytes.
        network: False = no network interface but loopback.
        disk_mb: disk quota in MiB: what the sandbox may write in total (its persistent dirs and,
            on docker, its whole container file system) since it was created or forked. A write
            past it fails inside the sandbox with ENOSPC ("No space left on device") and the
            command's `ExecResult.disk_full` is True. Each sandbox gets its own file system of
            this size (see pivot_envs/sandbox/volumes.py), so the host disk is never filled.
        root_caps: False (default): root in the sandbox holds no capability at all (CapEff 0), so it
            cannot pass a permission check it does not own. True: root holds ROOT_CAPS, Docker's
            default allow-list, as real task images expect (`chown`, `chpasswd`, `useradd` work),
            still with no_new_privs and the seccomp filter; on the local backend only inside a
            user namespace that maps the sandbox's uids to unprivileged host uids, where /etc
            also becomes writable (and snapshotted) state. A task asks for it with
            `"limits": {"root_caps": true}`.
    """

    cpus: float = 1.0
    memory_mb: int = 1024
    pids: int = 256
    timeout_s: float = 30.0
    output_bytes: int = 64 * 1024
    network: bool = False
    disk_mb: int = 1024
    root_caps: bool = False

    def __post_init__(self) -> None:
        checks = {"cpus": self.cpus > 0, "memory_mb": self.memory_mb >= 16, "pids": self.pids >= 8,
                  "timeout_s": self.timeout_s > 0, "output_bytes": self.output_bytes >= 0,
                  "disk_mb": self.disk_mb >= 8}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid SandboxLimits {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}: "
                             "need cpus > 0, memory_mb >= 16, pids >= 8, timeout_s > 0, output_bytes >= 0, "
                             "disk_mb >= 8")


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """The outcome of one command. `exit_code` is -1 when it timed out; a command killed by a signal
    (e.g. the memory limit) has the shell convention 128 + signal (137 for SIGKILL).

    `disk_full` is True when the sandbox's disk quota (`SandboxLimits.disk_mb`) was exhausted by the
    end of the command: some write of it failed (or will fail) with ENOSPC. That is the command's
    doing, not an infrastructure failure: a verifier scores such an action 0 with a reason
    ("the command filled the sandbox's disk quota"), and it never masks it.
    """

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    duration_s: float = 0.0
    disk_full: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One path in a file-system manifest. `digest` is sha256 of the content (files), the link
    target (symlinks) or "" (directories)."""

    kind: str  # "file" | "dir" | "link" | "other"
    mode: int  # permission bits (st_mode & 0o7777)
    digest: str


Manifest = Mapping[str, FileEntry]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """An immutable, backend-specific handle to a frozen sandbox state.

    `ref` is what the backend needs to fork it (an image id, a directory); `key` is the cache key
    it was stored under, if any.
    """

    backend: str
    ref: str
    workdir: str = "/app"
    key: str = ""


class Sandbox(abc.ABC):
    """One live sandbox. Use as a context manager or call `close()` (safe to call twice)."""

    workdir: str = "/app"

    @abc.abstractmethod
    def exec(self, cmd: str, timeout: float | None = None, *, workdir: str | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        """Run `cmd` with `bash -c` in `workdir` (default: the sandbox workdir)."""

    @abc.abstractmethod
    def read_file(self, path: str) -> bytes:
        """Return the bytes of `path` (absolute, or relative to the workdir). Raises FileNotFoundError."""

    @abc.abstractmethod
    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Create or replace `path`, creating parent directories."""

    @abc.abstractmethod
    def snapshot(self, key: str = "") -> Snapshot:
        """Freeze the current state. The sandbox stays usable; later writes don't affect the snapshot."""

    @abc.abstractmethod
    def manifest(self, roots: tuple[str, ...] | None = None) -> dict[str, FileEntry]:
        """Map every path under `roots` (default: the workdir) to its FileEntry.
        Paths are absolute. Used for state comparison and for replay-identity checks."""

    @abc.abstractmethod
    def close(self, wait: bool = True) -> None:
        """Stop and remove everything this sandbox holds. Idempotent. With `wait=False` a backend may
        finish the removal in the background, accounted: `SandboxBackend.flush_removals()` (which
        every env's `close()` calls) returns once it is done. Envs close their forks and their
        previous state's sandbox this way, off the reset's and the verdict's path."""

    def lost_to_outside(self) -> bool:
        """Whether the sandbox was killed from outside (not by a command run in it): asked after a
        command or measurement failed, to tell an infrastructure failure from an action that broke
        its own sandbox. Default: no way to tell (False)."""
        return False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class BackendCapabilities:
    """What a backend can do, declared by its class, read by the code that must choose or check a
    backend (envs, `pivotrl sandbox gc`, CLIs, tests) instead of naming backends.

    Attributes:
        runs_images: `create(image=...)` runs that container image. False: sandboxes run the host's
            tools, and `create` accepts no image but None (or "host").
        reaps_killed_runs: how what a run killed without `close()` left behind is found and removed
            (`SandboxBackend.reap_stale`); one line for docs and error messages.
        requires: what the host must provide for the backend to start (said when it cannot).
        test_markers: pytest markers its tests carry (the prerequisites a test run must provision).
        keeps_processes: whether a process one `exec` starts in the background still runs during
            the next (docker: the container lives on; local: no, each exec has its own PID
            namespace). None: not declared, found out by a probe (pivot_envs/processes.py).
    """

    runs_images: bool = False
    reaps_killed_runs: str = "nothing to reap: the backend holds nothing outside its process"
    requires: str = ""
    test_markers: tuple[str, ...] = ()
    keeps_processes: bool | None = None


class SandboxBackend(abc.ABC):
    """Creates sandboxes and forks snapshots. One backend object per process is enough.

    A backend class declares `name` (the one it is registered under) and `capabilities`."""

    name: str = ""
    capabilities: ClassVar[BackendCapabilities] = BackendCapabilities()
    # The longest limit one `exec` accepts (None: no ceiling). Callers with longer declared limits
    # (e.g. a task's verifier timeout) clamp to it and say so, rather than fail on a ValueError.
    max_exec_timeout_s: float | None = None

    def image_identity(self, image: str | None) -> str:
        """What identifies the contents of `image` now. Snapshot cache keys use it: keyed by the name,
        an image rebuilt under the same tag in one process served the snapshots of the old one.
        Backends with mutable image names (docker tags) return the image ID; the default is the name."""
        return image or ""

    @classmethod
    def reap_stale(cls) -> dict[str, int]:
        """Remove what runs of this backend that died without `close()` left on this host (never
        what live processes hold); returns counts per kind of thing removed. A new backend instance
        does it for itself when it starts; `pivotrl sandbox gc` calls this for every backend. May
        raise SandboxUnavailableError when the backend cannot run here (nothing to reap then)."""
        return {}

    def __deepcopy__(self, memo: dict) -> SandboxBackend:
        # A backend is a handle to shared external resources (a daemon, mounts); `gym.make` deep-copies
        # its kwargs, and a copy must stay the same backend.
        return self

    @abc.abstractmethod
    def create(self, image: str | None = None, *, workdir: str = "/app",
               limits: SandboxLimits | None = None) -> Sandbox:
        """Start a fresh sandbox from `image` (backend default when None)."""

    @abc.abstractmethod
    def fork(self, snapshot: Snapshot) -> Sandbox:
        """Start a new sandbox whose state equals `snapshot`."""

    @abc.abstractmethod
    def release(self, snapshot: Snapshot) -> None:
        """Free the storage behind a snapshot (idempotent)."""

    def warm(self, snapshot: Snapshot) -> None:
        """A hint: `snapshot` will be forked again soon (an agent loop's next episode from the same
        state). A backend with a fork pool starts forks of it ahead; others ignore it."""

    def flush_removals(self) -> None:
        """Return once every sandbox closed so far is gone (processes, mounts, containers). A backend
        that removes sandboxes closed with `close(wait=False)` in the background waits for them here;
        one that always removes in `close()` has nothing to wait for."""

    def close(self) -> None:
        """Release everything the backend still holds (sandboxes and snapshots it created)."""
