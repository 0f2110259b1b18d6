"""The `local` sandbox backend: bubblewrap process isolation plus overlayfs snapshots, on the host.

Why it exists: a Docker fork (commit + run) costs hundreds of milliseconds; PivotRL resets to pivot
states thousands of times, so the local backend makes a fork cost one overlay mount (~1 ms) and an
exec cost one `bwrap` start. `benchmark()` (or benchmarks/local_sandbox_micro.py) measures it next
to the raw mount+bwrap floor: fork + first exec ran at 0.7x that floor on a loaded 2-core VM.

What a sandbox sees
    * The host's system directories (/usr, /bin, /lib*, /sbin, /etc, /opt, and from /var only the
      package databases), READ-ONLY. The sandbox runs the host's tools; it cannot run Docker images
      (`create(image=...)` accepts only None or "host"). /home, /work, /mnt, /sys, the rest of /var
      and other host directories are hidden.
    * Persistent state, captured by `snapshot()` and restored by `fork()`: the workdir (default
      /app), /tmp and /root (HOME). Everything else is either read-only or scratch: writes outside
      the read-only binds (/run, /var/tmp, /dev/shm, new top-level dirs) land on a tmpfs that is
      fresh at every exec. This differs from the docker backend, whose
      whole container file system persists: a command that installs into /usr fails here.
    * No background process survives its `exec`: each exec runs in its own PID namespace, which the
      kernel tears down when the command exits (docker keeps them running in the container).
    * No network (a private network namespace with loopback only) unless `limits.network`.
    * uid 0 inside a user namespace that maps only root: `chown` to other users fails.
    * No capabilities (`--cap-drop ALL`: CapEff 0, so no remount of the read-only binds and no
      reading past file permissions), no_new_privs, and a seccomp filter (seccomp.py) that denies
      the mount API, new namespaces, ptrace, keyctl, bpf, module loading, kexec and raw devices.
    * No host secrets: /etc is a copy taken when the backend starts, without /etc/shadow,
      /etc/gshadow, keys and every other file "other" users may not read; such files elsewhere in
      the binds are masked; host /root, /home, /var/lib/docker and the Docker socket are never bound.
    * A disk quota (`limits.disk_mb`): the upper dirs live on the sandbox's own loop-mounted ext4
      volume (volumes.py), so a write past it fails with ENOSPC and `ExecResult.disk_full` is set.

How state is stored (all under one root directory, removed by `close()` and at interpreter exit)
    * `V/<volume>/{upper,work,layers/<n>,trash}`: a sandbox's quota volume (an ext4 file system on
      a loop device, image `V/<volume>.img`). `layers/<n>` are immutable layers frozen from its
      upper dir: whiteouts (char devices 0/0) and opaque-dir xattrs included, so they work as
      overlay lower layers as is. A volume stays mounted while a snapshot stands on its layers.
    * `L/<n>`: squashed layers (and the empty one), on the host disk.
    * `S/<n>/merged`: one live sandbox's overlay mount, whose lower layers are the stack it was
      forked from; it mirrors the sandbox paths of the persistent dirs (merged/app, merged/tmp,
      merged/root), which are bound into the sandbox at those paths.
    * `snapshot()` unmounts (no process runs between execs), renames the upper dir into a new layer,
      pushes it on the stack and remounts over a fresh upper: O(1), whatever the state size. A stack
      deeper than `max_layers` is squashed into one layer (a copy of its merged view).
    * `Snapshot.ref` is "<snapshot id>=<layer>:<layer>:..." (top layer first, absolute paths): the
      overlay lowerdir itself. Layers are shared between snapshots and freed when nothing (no
      unreleased snapshot, no live sandbox) uses them.

Limits: one cgroup per sandbox (v1: memory, pids, cpu controllers; v2: the same in one directory)
joined by a tiny `sh` wrapper before it execs `bwrap`. Without usable cgroups the backend falls back
to rlimits (`prlimit`) and logs a warning: memory becomes an address-space cap, pids a per-user
process cap, and there is no CPU cap.

A sandbox is not thread-safe (one exec at a time); the backend is (many sandboxes in threads).
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import dataclasses
import errno
import hashlib
import itertools
import logging
import os
import posixpath
import queue
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping

from pivot_envs.errors import PivotError, SandboxError, SandboxUnavailableError
from pivot_envs.sandbox.base import (
    ExecResult,
    FileEntry,
    Sandbox,
    SandboxBackend,
    SandboxLimits,
    Snapshot,
)
from pivot_envs.sandbox.seccomp import compile_filter
from pivot_envs.sandbox.volumes import VolumeFactory, loop_devices_backed_under

log = logging.getLogger(__name__)

BWRAP_INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`)"

#: Host directories bound read-only into every sandbox (those that exist; symlinks stay symlinks).
HOST_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
#: The parts of the host's /var a sandbox sees (package databases: `dpkg -l`, `apt list` work).
HOST_VAR_PATHS = ("/var/lib/dpkg", "/var/lib/apt", "/var/cache")
#: Scratch dirs made at every exec on bwrap's root tmpfs (so, empty at every exec).
SCRATCH_DIRS = ("/run", "/var/tmp")
#: Directories that persist besides the workdir (captured by snapshots).
EXTRA_PERSISTENT_DIRS = ("/tmp", "/root")
_PERSISTENT_DIR_MODES = {"/tmp": 0o1777, "/root": 0o700}

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

#: Host files and dirs that are never shown, even when world-readable (hashes, keys, the Docker
#: socket); besides these, every entry under the bound host dirs that "other" users cannot read is
#: masked too (see `_host_masks`), because uid 0 in the sandbox still passes owner-permission checks.
HOST_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
                "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private", "/etc/docker", "/var/run/docker.sock",
                "/run/docker.sock", "/var/lib/docker", "/root", "/home")
#: A sandbox whose volume has less free space than this (or 1% of its quota, if more) counts as
#: having filled its disk quota: writers in 1 MiB blocks (dd, cp) stop within a block of the end.
DISK_FULL_SLACK_BYTES = 1 << 20

_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MNT_DETACH = 0x2
# The legacy mount(2) API passes the options in one page; keep the lowerdir list well below it.
_MAX_MOUNT_OPTIONS = 3500


class SandboxPathError(PivotError, ValueError):
    """A path given to read_file/write_file/manifest is outside what the local backend stores."""


# --------------------------------------------------------------------------------------------------
# Mounts


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


_volatile_ok = True  # overlay's `volatile` option (Linux >= 5.10); cleared on the first EINVAL


def _mount_overlay(lowers: tuple[str, ...], upper: str | None, work: str | None, target: str) -> None:
    """Mount an overlay at `target` (read-only when `upper` is None). Direct syscall: no `mount`
    process to start, so a fork costs about a millisecond."""
    opts = "lowerdir=" + ":".join(lowers)
    if upper is not None:
        # volatile: never sync the upper dir to disk (unmount and snapshot stay fast); a crash
        # loses the sandbox anyway, and leftovers are swept by the next backend.
        opts += f",upperdir={upper},workdir={work}"
    flags = _MS_NOSUID | _MS_NODEV | (0 if upper is not None else 1)  # 1 = MS_RDONLY
    global _volatile_ok
    if upper is not None and _volatile_ok:
        if _libc.mount(b"overlay", target.encode(), b"overlay", flags, (opts + ",volatile").encode()) == 0:
            return
        volatile_errno = ctypes.get_errno()
    else:
        volatile_errno = 0
    if _libc.mount(b"overlay", target.encode(), b"overlay", flags, opts.encode()) == 0:
        if volatile_errno == errno.EINVAL:
            _volatile_ok = False  # kernel < 5.10 has no `volatile`: mount without it from now on
            log.info("overlayfs has no 'volatile' option here; unmounts will sync the upper dirs")
        return
    else:
        err = ctypes.get_errno()
        raise SandboxUnavailableError(
            f"overlay mount at {target} failed: {os.strerror(err)} (options {opts[:200]}...). The local "
            "backend needs root (or CAP_SYS_ADMIN) and a kernel with overlayfs (`modprobe overlay`); "
            "its state dir must be on a file system overlayfs accepts as upper (ext4, xfs, tmpfs; not "
            "overlayfs itself: set PIVOTRL_CACHE to such a directory)")


def _unmount(target: str, lazy: bool = False) -> None:
    if _libc.umount2(target.encode(), _MNT_DETACH if lazy else 0) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # not mounted
            return
        if err == errno.EBUSY:
            log.warning("mount %s busy; detaching it lazily", target)
            if _libc.umount2(target.encode(), _MNT_DETACH) == 0:
                return
            err = ctypes.get_errno()
        raise SandboxError(f"cannot unmount {target}: {os.strerror(err)}")


def _mounts_under(root: str) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = root.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(prefix):
                found.append(point)
    return sorted(found, key=len, reverse=True)


# --------------------------------------------------------------------------------------------------
# Cgroups


class _Cgroups:
    """Creates, fills and removes one cgroup per sandbox, on cgroup v1 or v2.

    `parent` names this backend's cgroup (`pivotrl-local/<tag>`); a sandbox's cgroup lives under it
    in every controller hierarchy used. `available` is False when nothing could be set up.
    """

    V1_CONTROLLERS = ("memory", "pids", "cpu")

    def __init__(self, tag: str, base: str = "/sys/fs/cgroup"):
        self.base = base
        self.tag = tag
        self.version = 0
        self.parents: list[str] = []  # this backend's parent cgroup directory, per hierarchy
        self.reason = ""
        try:
            if os.path.exists(os.path.join(base, "cgroup.controllers")):
                self._init_v2()
            elif all(os.path.isdir(os.path.join(base, c)) for c in self.V1_CONTROLLERS):
                self._init_v1()
            else:
                self.reason = f"no cgroup v1 {'/'.join(self.V1_CONTROLLERS)} nor cgroup v2 under {base}"
        except OSError as e:
            self.reason = f"cannot create cgroups under {base}: {e}"
            self.remove_parents()
            self.parents = []
            self.version = 0

    @property
    def available(self) -> bool:
        return self.version != 0

    def _init_v1(self) -> None:
        for ctrl in self.V1_CONTROLLERS:
            parent = os.path.join(self.base, ctrl, "pivotrl-local", self.tag)
            os.makedirs(parent, exist_ok=True)
            self.parents.append(parent)
        self.version = 1

    def _init_v2(self) -> None:
        wanted = {"memory", "pids", "cpu"}
        with open(os.path.join(self.base, "cgroup.controllers")) as f:
            have = set(f.read().split())
        if not wanted <= have:
            raise OSError(f"cgroup v2 root lacks controllers {sorted(wanted - have)}")
        top = os.path.join(self.base, "pivotrl-local")
        parent = os.path.join(top, self.tag)
        os.makedirs(parent, exist_ok=True)
        self.parents.append(parent)
        enable = " ".join("+" + c for c in sorted(wanted))
        for d in (self.base, top, parent):  # intermediate cgroups hold no process: allowed
            with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                f.write(enable)
        self.version = 2

    def create(self, name: str, limits: SandboxLimits) -> list[str]:
        """Make the cgroup(s) of one sandbox with `limits`; return the cgroup.procs files to join."""
        dirs = [os.path.join(p, name) for p in self.parents]
        for d in dirs:
            os.mkdir(d)
        mem = str(limits.memory_mb * 1024 * 1024)
        period = 100_000
        quota = max(1000, int(limits.cpus * period))
        try:
            if self.version == 1:
                mem_dir, pids_dir, cpu_dir = dirs
                _write(os.path.join(mem_dir, "memory.limit_in_bytes"), mem)
                if os.path.exists(os.path.join(mem_dir, "memory.memsw.limit_in_bytes")):
                    _write(os.path.join(mem_dir, "memory.memsw.limit_in_bytes"), mem)  # no swapping past it
                _write(os.path.join(pids_dir, "pids.max"), str(limits.pids))
                _write(os.path.join(cpu_dir, "cpu.cfs_period_us"), str(period))
                _write(os.path.join(cpu_dir, "cpu.cfs_quota_us"), str(quota))
            else:
                (d,) = dirs
                _write(os.path.join(d, "memory.max"), mem)
                if os.path.exists(os.path.join(d, "memory.swap.max")):
                    _write(os.path.join(d, "memory.swap.max"), "0")
                _write(os.path.join(d, "pids.max"), str(limits.pids))
                _write(os.path.join(d, "cpu.max"), f"{quota} {period}")
        except OSError:
            self.remove(name)
            raise
        return [os.path.join(d, "cgroup.procs") for d in dirs]

    def pids(self, name: str) -> list[int]:
        procs = os.path.join(self.parents[-1 if self.version == 2 else 1], name, "cgroup.procs")
        try:
            with open(procs) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def oom_kills(self, name: str) -> int:
        """How many processes the kernel OOM-killed in this cgroup so far."""
        path = (os.path.join(self.parents[0], name, "memory.oom_control") if self.version == 1
                else os.path.join(self.parents[0], name, "memory.events"))
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (FileNotFoundError, ValueError):
            pass
        return 0

    def kill_all(self, name: str, deadline_s: float = 2.0) -> bool:
        """SIGKILL every process in the cgroup until it is empty. True when it emptied in time."""
        if self.version == 2:
            kill_file = os.path.join(self.parents[0], name, "cgroup.kill")
            if os.path.exists(kill_file):
                try:
                    _write(kill_file, "1")
                except OSError:
                    pass
        end = time.monotonic() + deadline_s
        while True:
            pids = self.pids(name)
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.005)

    def remove(self, name: str) -> None:
        self.kill_all(name)
        for parent in self.parents:
            d = os.path.join(parent, name)
            for attempt in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or attempt == 49:
                        log.warning("cannot remove cgroup %s: %s", d, e)
                        break
                    time.sleep(0.01)

    def live(self) -> list[str]:
        out = []
        for parent in self.parents:
            if os.path.isdir(parent):
                out += [os.path.join(parent, n) for n in sorted(os.listdir(parent))
                        if os.path.isdir(os.path.join(parent, n))]
        return out

    def remove_parents(self) -> None:
        for parent in self.parents:
            for child in (os.listdir(parent) if os.path.isdir(parent) else []):
                if os.path.isdir(os.path.join(parent, child)):
                    self.remove(child)
            try:
                os.rmdir(parent)
            except OSError:
                pass


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


# --------------------------------------------------------------------------------------------------
# Sandbox


def _norm(path: str) -> str:
    """Lexically normalised absolute path ('//a/./b/' -> '/a/b')."""
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def persistent_dirs(workdir: str) -> tuple[str, ...]:
    """The sandbox directories a local sandbox keeps (and snapshots) for this workdir."""
    dirs = sorted({workdir, *EXTRA_PERSISTENT_DIRS})
    return tuple(d for d in dirs if not any(o != d and _inside(d, o) for o in dirs))


class LocalSandbox(Sandbox):
    """One sandbox: an overlay mount over a layer stack plus a cgroup. Created by `LocalBackend`."""

    def __init__(self, backend: LocalBackend, sid: str, stack: tuple[str, ...], workdir: str,
                 limits: SandboxLimits, fresh: bool):
        self._backend = backend
        self.id = sid
        self.workdir = workdir
        self.limits = limits
        self.stack = stack
        self.persistent = persistent_dirs(workdir)
        self.dir = os.path.join(backend.root, "S", sid)
        self.merged = os.path.join(self.dir, "merged")
        self.volume = ""  # mount point of this sandbox's size-limited file system (its disk quota)
        self.upper = self.work = ""
        self.closed = False
        self._mounted = False
        self._cgroup_procs: list[str] = []
        os.mkdir(self.dir)
        try:
            os.mkdir(self.merged)
            # Upper and work dir live on the sandbox's own volume: every write of the sandbox is
            # bounded by `limits.disk_mb`, and snapshots rename the upper dir within that volume.
            self.volume = backend._new_volume(sid, limits.disk_mb)
            self.upper = os.path.join(self.volume, "upper")
            self.work = os.path.join(self.volume, "work")
            os.mkdir(self.upper)
            os.mkdir(self.work)
            os.mkdir(os.path.join(self.volume, "layers"))
            os.mkdir(os.path.join(self.volume, "trash"))
            if fresh:
                self._make_skeleton()
            self._mount()
            if backend.cgroups.available:
                self._cgroup_procs = backend.cgroups.create(sid, limits)
            self._argv_head = self._build_argv()
        except BaseException:
            self.close()
            raise

    # -- setup --------------------------------------------------------------------------------------

    def _make_skeleton(self) -> None:
        """The persistent dirs of a fresh sandbox, in the upper dir (they become its first layer)."""
        for d in self.persistent:
            path = self.upper
            for part in d.strip("/").split("/"):
                path = os.path.join(path, part)
                if not os.path.isdir(path):
                    os.mkdir(path)
                    os.chmod(path, 0o755)
            os.chmod(path, _PERSISTENT_DIR_MODES.get(d, 0o755))

    def _mount(self) -> None:
        _mount_overlay(self.stack, self.upper, self.work, self.merged)
        self._mounted = True

    def _build_argv(self) -> list[str]:
        """sh wrapper (joins the cgroup, or sets rlimits) + bwrap options, without --chdir/command."""
        be = self._backend
        head: list[str]
        if self._cgroup_procs:
            join = "; ".join(f"echo $$ > {p}" for p in self._cgroup_procs)
            head = ["/bin/sh", "-c", f"{join} && exec \"$@\"", "sh"]
        elif be.prlimit:
            nproc = be.host_root_processes() + self.limits.pids
            head = [be.prlimit, f"--as={self.limits.memory_mb * 1024 * 1024}", f"--nproc={nproc}", "--"]
        else:
            head = []
        # --cap-drop ALL: uid 0 inside, but no capability at all (CapEff 0): it cannot remount the
        # read-only host dirs, mount, load modules or read past file permissions. bwrap also sets
        # no_new_privs, and `--seccomp` (added per exec) denies the dangerous syscalls outright.
        argv = head + [be.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                       "--cap-drop", "ALL", "--hostname", "sandbox"]
        if self.limits.network:
            argv.append("--share-net")
        argv += be.host_binds
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for d in SCRATCH_DIRS:  # on bwrap's root tmpfs: a mkdir, not a mount
            argv += ["--perms", "1777" if d.endswith("tmp") else "0755", "--dir", d]
        for d in self.persistent:
            argv += ["--bind", self.merged + d, d]
        return argv

    # -- paths --------------------------------------------------------------------------------------

    def _sandbox_path(self, path: str) -> str:
        if not isinstance(path, str) or not path:
            raise SandboxPathError(f"path must be a non-empty string, got {path!r}")
        return path if path.startswith("/") else posixpath.join(self.workdir, path)

    def _persistent_root(self, path: str) -> str | None:
        return next((d for d in self.persistent if _inside(path, d)), None)

    def _resolve(self, path: str, *, follow_last: bool = True) -> str:
        """Map a sandbox path to the host path in the merged dir, following symlinks the way the
        sandbox would (absolute targets are sandbox paths). Raises SandboxPathError when the path
        leaves the persistent dirs: the rest of the sandbox is the host's read-only system."""
        pending = [p for p in self._sandbox_path(path).split("/") if p]
        resolved = "/"
        hops = 0
        while pending:
            name = pending.pop(0)
            if name == ".":
                continue
            if name == "..":
                resolved = posixpath.dirname(resolved)
                continue
            candidate = posixpath.join(resolved, name)
            if self._persistent_root(candidate) is None:
                if any(_inside(d, candidate) for d in self.persistent):
                    resolved = candidate  # an ancestor of a persistent dir, e.g. "/" or "/home"
                    continue
                raise SandboxPathError(
                    f"{path!r} resolves to {candidate + ('/' + '/'.join(pending) if pending else '')!r}, "
                    f"outside the dirs the local sandbox stores ({', '.join(self.persistent)}); "
                    "the rest of its file system is the host's, read-only. Use a path under those dirs.")
            host = self.merged + candidate
            if (pending or follow_last) and os.path.islink(host):
                hops += 1
                if hops > 40:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(host)
                if target.startswith("/"):
                    resolved = "/"
                pending = [p for p in target.split("/") if p] + pending
                continue
            resolved = candidate
        if self._persistent_root(resolved) is None:
            raise SandboxPathError(f"{path!r} is not inside the stored dirs ({', '.join(self.persistent)})")
        return self.merged + resolved

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxError(f"local sandbox {self.id} is closed; fork or create a new one")

    # -- contract -----------------------------------------------------------------------------------

    def exec(self, cmd: str, timeout: float | None = None, *, workdir: str | None = None,
             env: Mapping[str, str] | None = None) -> ExecResult:
        self._check_open()
        timeout = self.limits.timeout_s if timeout is None else float(timeout)
        cwd = _norm(self._sandbox_path(workdir)) if workdir else self.workdir
        self._check_exec_dir(cwd)
        full_env = dict(BASE_ENV)
        if env:
            full_env.update(env)
        status_r, status_w = os.pipe()  # bwrap reports the command's exit code here (absent = setup failed)
        seccomp_fd = os.open(self._backend.seccomp_file, os.O_RDONLY)  # bwrap reads the filter from it
        argv = self._argv_head + ["--seccomp", str(seccomp_fd), "--json-status-fd", str(status_w),
                                  "--chdir", cwd, "bash", "-c", cmd]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=full_env, pass_fds=(status_w, seccomp_fd),
                                    start_new_session=True)
        except OSError as e:
            os.close(status_r)
            os.close(status_w)
            raise SandboxUnavailableError(f"cannot start bwrap: {e}; {BWRAP_INSTALL_HINT}") from e
        finally:
            os.close(seccomp_fd)
        os.close(status_w)
        try:
            out, err, timed_out, truncated, flooded = self._collect(proc, start + timeout)
        finally:
            if proc.poll() is None:
                self._kill(proc)
            proc.wait()
            with os.fdopen(status_r, "rb") as f:
                status = f.read()
        if self._cgroup_procs and (timed_out or flooded):
            # The PID namespace dies with bwrap; the sweep makes sure of it before we return.
            # (After a normal exit the kernel is already reaping it: no need to wait.)
            self._backend.cgroups.kill_all(self.id)
        duration = time.monotonic() - start
        killed = timed_out or flooded
        if not killed and b'"exit-code"' not in status:
            raise SandboxError(
                f"bwrap could not set up the sandbox (exit {proc.returncode}): "
                f"{err.decode(errors='replace').strip()[:2000]}")
        if self._cgroup_procs and proc.returncode == 137 and self._backend.cgroups.oom_kills(self.id):
            log.info("sandbox %s: a process hit the %d MiB memory limit and was killed",
                     self.id, self.limits.memory_mb)
        return ExecResult(exit_code=-1 if killed else proc.returncode,
                          stdout=out.decode("utf-8", errors="replace"),
                          stderr=err.decode("utf-8", errors="replace"),
                          timed_out=timed_out, truncated=truncated, duration_s=duration,
                          disk_full=self.disk_full())

    def disk_full(self) -> bool:
        """Whether this sandbox's disk quota is (all but) used up: less than one block's worth, or
        no inode, left on its volume. A write past the quota has failed with ENOSPC then."""
        free, inodes = VolumeFactory.free_bytes(self.volume)
        return free < max(DISK_FULL_SLACK_BYTES, (self.limits.disk_mb << 20) // 100) or inodes == 0

    def _check_exec_dir(self, cwd: str) -> None:
        if self._persistent_root(cwd) is not None:
            ok = os.path.isdir(self._resolve(cwd))
        else:  # the host's read-only system dirs (or "/")
            ok = (cwd == "/" or cwd.split("/")[1] in HOST_SYSTEM_DIRS) and os.path.isdir(cwd)
        if not ok:
            raise SandboxPathError(f"exec workdir {cwd!r} is not a directory in sandbox {self.id}")

    def _collect(self, proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes, bool, bool, bool]:
        """Read stdout/stderr until EOF or `deadline`, keeping at most `output_bytes` of each.
        Output past the cap is read and dropped (the command runs on unchanged); past
        `flood_bytes` dropped bytes the command is killed so that a flood cannot spin forever."""
        cap = self.limits.output_bytes
        assert proc.stdout is not None and proc.stderr is not None  # Popen(stdout=PIPE, stderr=PIPE)
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        bufs = {out_fd: bytearray(), err_fd: bytearray()}
        dropped = 0
        truncated = timed_out = flooded = False
        with selectors.DefaultSelector() as sel:
            for fd in bufs:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map() and not (timed_out or flooded):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(remaining):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fd)
                        continue
                    buf = bufs[key.fd]
                    room = cap - len(buf)
                    if room > 0:
                        buf += chunk[:room]
                    if len(chunk) > room:
                        truncated = True
                        dropped += len(chunk) - max(room, 0)
                flooded = dropped > self._backend.flood_bytes
        if not (timed_out or flooded):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        proc.stdout.close()
        proc.stderr.close()
        return bytes(bufs[out_fd]), bytes(bufs[err_fd]), timed_out, truncated, flooded

    def _kill(self, proc: subprocess.Popen) -> None:
        """Kill bwrap; --die-with-parent and the PID namespace take every sandboxed process along.
        The cgroup sweep afterwards catches anything that got out of the namespace."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def read_file(self, path: str) -> bytes:
        self._check_open()
        host = self._resolve(path)
        try:
            fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"no such file in sandbox {self.id}", path) from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            if not stat.S_ISREG(st.st_mode):
                raise SandboxPathError(f"{path!r} is not a regular file")
            return f.read()

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        self._check_open()
        if isinstance(data, str):
            data = data.encode()
        host = self._resolve(path)
        parent = os.path.dirname(host)
        missing = []
        while not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise NotADirectoryError(errno.ENOTDIR, "a parent is not a directory", path)
        for d in reversed(missing):
            os.mkdir(d)
            os.chmod(d, 0o755)
        if os.path.isdir(host):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode & 0o7777)

    def snapshot(self, key: str = "") -> Snapshot:
        self._check_open()
        return self._backend._snapshot(self, key)

    def _freeze(self) -> tuple[str, ...]:
        """Turn the upper dir into a layer on top of the stack and remount over a fresh upper.
        Returns the new stack (unchanged when nothing was written since the last freeze)."""
        if not os.listdir(self.upper):
            return self.stack
        _unmount(self.merged)
        self._mounted = False
        layer = os.path.join(self.volume, "layers", self._backend._next_id())
        os.rename(self.upper, layer)
        os.mkdir(self.upper)
        stack = (layer,) + self.stack
        self._backend._add_layer(layer)
        return stack

    def _remount(self, stack: tuple[str, ...]) -> None:
        """Mount over `stack` with the (empty) upper dir and a fresh work dir: a volatile overlay
        marks its work dir, and the kernel refuses to mount over a marked one again."""
        if self._mounted:
            _unmount(self.merged)
            self._mounted = False
        self._backend._discard(self.work)
        os.mkdir(self.work)
        self.stack = stack
        self._mount()

    def manifest(self, roots: tuple[str, ...] | None = None) -> dict[str, FileEntry]:
        self._check_open()
        out: dict[str, FileEntry] = {}
        for root in roots or (self.workdir,):
            root = _norm(self._sandbox_path(root))
            if self._persistent_root(root) is None:
                raise SandboxPathError(
                    f"manifest root {root!r} is outside the dirs the local sandbox stores "
                    f"({', '.join(self.persistent)}); the rest is the host's read-only system")
            host_root = self.merged + root
            if not os.path.lexists(host_root):
                continue
            for host, st in _walk(host_root):
                out[root + host[len(host_root):]] = _entry(host, st)
        return dict(sorted(out.items()))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        be = self._backend
        try:
            if be.cgroups.available:
                be.cgroups.remove(self.id)
            if self._mounted:
                _unmount(self.merged)
                self._mounted = False
            be._discard(self.dir)
        finally:
            be._forget(self)  # releases the volume unless a snapshot still stands on its layers

    def __repr__(self) -> str:
        return f"LocalSandbox(id={self.id!r}, workdir={self.workdir!r}, layers={len(self.stack)}, closed={self.closed})"


def _walk(top: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (path, lstat) for `top` and everything below it, never following symlinks."""
    st = os.lstat(top)
    yield top, st
    if not stat.S_ISDIR(st.st_mode):
        return
    stack = [top]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                est = e.stat(follow_symlinks=False)
                yield e.path, est
                if stat.S_ISDIR(est.st_mode):
                    stack.append(e.path)


def _entry(path: str, st: os.stat_result) -> FileEntry:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return FileEntry("file", mode, h.hexdigest())
    if stat.S_ISDIR(st.st_mode):
        return FileEntry("dir", mode, "")
    if stat.S_ISLNK(st.st_mode):
        return FileEntry("link", mode, os.readlink(path))
    return FileEntry("other", mode, "")


# --------------------------------------------------------------------------------------------------
# Backend


@dataclasses.dataclass
class _SnapshotRecord:
    stack: tuple[str, ...]
    limits: SandboxLimits


class LocalBackend(SandboxBackend):
    """Sandboxes isolated with bubblewrap on the host; snapshots are overlayfs layer stacks.

    Args:
        root: parent directory for the backend's state (default: $PIVOTRL_CACHE/local, else the
            system temp dir). A private subdirectory is made there and removed by `close()`.
        limits: default limits of `create` (and of forks of snapshots whose origin is unknown).
        max_layers: a snapshot whose layer stack gets deeper than this is squashed into one layer.
        flood_bytes: an exec whose dropped (past the cap) output exceeds this is killed.
        volume_pool: empty disk-quota volumes kept mounted ahead, per quota size in use, so that a
            fork does not wait for one (~5-10 ms: image copy, loop device, mount); 0 = none.
    """

    name = "local"

    def __init__(self, root: str | None = None, *, limits: SandboxLimits | None = None,
                 max_layers: int = 32, flood_bytes: int = 64 * 1024 * 1024, volume_pool: int = 2):
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailableError(f"the local sandbox backend needs bubblewrap (`bwrap`); {BWRAP_INSTALL_HINT}")
        self.bwrap: str = bwrap
        if os.geteuid() != 0:
            raise SandboxUnavailableError(
                "the local sandbox backend mounts overlayfs and needs root (or CAP_SYS_ADMIN); run as root "
                "or use the docker backend")
        if max_layers < 1:
            raise ValueError(f"max_layers must be >= 1, got {max_layers}")
        self.limits = limits or SandboxLimits()
        self.max_layers = max_layers
        self.flood_bytes = flood_bytes
        parent = root or (os.path.join(os.environ["PIVOTRL_CACHE"], "local") if os.environ.get("PIVOTRL_CACHE")
                          else tempfile.gettempdir())
        os.makedirs(parent, exist_ok=True)
        sweep_stale_roots(parent)
        self.root = tempfile.mkdtemp(prefix="pivotrl-local-", dir=parent)
        if any(c in self.root for c in ":,=\\ "):
            os.rmdir(self.root)
            raise SandboxUnavailableError(
                f"local backend state dir {self.root!r} contains one of ':,=\\ ' (overlay option syntax); "
                "choose another root / PIVOTRL_CACHE")
        self.tag = os.path.basename(self.root)
        with open(os.path.join(self.root, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        os.mkdir(os.path.join(self.root, "L"))
        os.mkdir(os.path.join(self.root, "S"))
        os.mkdir(os.path.join(self.root, "T"))
        os.mkdir(os.path.join(self.root, "M"))  # empty stand-ins for masked host secrets
        self.seccomp_file = os.path.join(self.root, "seccomp.bpf")
        with open(self.seccomp_file, "wb") as f:
            f.write(compile_filter())
        self._trash: queue.SimpleQueue[str | int | None] = queue.SimpleQueue()
        self._reaper = threading.Thread(target=self._reap, name=f"{self.tag}-reaper", daemon=True)
        self._reaper.start()
        self.volume_pool = max(0, int(volume_pool))
        self._ready_volumes: dict[int, list[str]] = {}  # quota MiB -> mounted, empty volumes
        self._volumes_wanted = threading.Event()
        self._volume_filler: threading.Thread | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.empty_layer = os.path.join(self.root, "L", "empty")
        os.mkdir(self.empty_layer)
        self._lock = threading.RLock()
        self._ids = itertools.count()
        self._sandboxes: dict[str, LocalSandbox] = {}
        self._snapshots: dict[str, _SnapshotRecord] = {}
        self._layers: set[str] = set()
        self._volumes: dict[str, bool] = {}  # volume mount point -> its sandbox is still open
        self._closed = False
        self.volumes = VolumeFactory(os.path.join(self.root, "V"))
        etc_copy = os.path.join(self.root, "etc")
        _filtered_copy("/etc", etc_copy)
        self.host_binds = _host_binds({"/etc": etc_copy}) + _host_masks(os.path.join(self.root, "M"))
        self.prlimit = shutil.which("prlimit")
        self.cgroups = _Cgroups(self.tag)
        if not self.cgroups.available:
            log.warning("local sandbox backend: %s; falling back to rlimits (%s): memory is an address-space "
                        "cap, pids a per-user process cap, no CPU cap", self.cgroups.reason,
                        "prlimit" if self.prlimit else "prlimit missing too: NO limits")
        atexit.register(self.close)
        self._check_works()

    def _check_works(self) -> None:
        """Fail early, with the reason, when overlay mounts or bwrap cannot run here."""
        try:
            with self.create() as sb:
                r = sb.exec("echo ok", timeout=30)
        except SandboxError as e:
            self.close()
            raise SandboxUnavailableError(f"local sandbox backend cannot run here: {e}") from e
        if r.stdout != "ok\n":
            self.close()
            raise SandboxUnavailableError(
                f"local sandbox self-test failed (exit {r.exit_code}): {r.stderr.strip()[:500]}; {BWRAP_INSTALL_HINT}")

    # -- ids and layers -------------------------------------------------------------------------------

    def _next_id(self) -> str:
        return format(next(self._ids), "x")

    def _new_layer_path(self) -> str:
        return os.path.join(self.root, "L", self._next_id())

    def _add_layer(self, layer: str) -> None:
        with self._lock:
            self._layers.add(layer)

    def _discard(self, path: str) -> None:
        """Delete `path` off the caller's critical path: rename it into the trash of its file system
        (instant) and let the reaper thread remove it (deleting even a few files costs milliseconds
        on some disks). A layer on a sandbox volume goes to that volume's trash."""
        volume = self._volume_of(path)
        trash = os.path.join(volume, "trash") if volume else os.path.join(self.root, "T")
        target = os.path.join(trash, self._next_id())
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        self._trash.put(target)

    def _reap(self) -> None:
        while True:
            path = self._trash.get()
            if path is None:
                return
            if isinstance(path, int):  # the root of a released, already unmounted volume
                _empty_dir_fd(path)
                os.close(path)
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)  # a released volume's trash vanishes: fine
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # -- volumes (the disk quota) ----------------------------------------------------------------------

    def _new_volume(self, sid: str, size_mb: int) -> str:
        """A mounted, empty volume of `size_mb` MiB for sandbox `sid`: a pooled one when ready."""
        mnt = None
        if self.volume_pool:
            with self._lock:
                ready = self._ready_volumes.setdefault(size_mb, [])
                if ready:
                    mnt = ready.pop()
                if self._volume_filler is None and not self._closed:
                    self._volume_filler = threading.Thread(target=self._fill_volumes, daemon=True,
                                                           name=f"{self.tag}-volumes")
                    self._volume_filler.start()
            self.stats["volume_pool_hits" if mnt else "volume_pool_misses"] += 1
            self._volumes_wanted.set()
        if mnt is None:
            mnt = self.volumes.create("v" + sid, size_mb)
        with self._lock:
            self._volumes[mnt] = True
        return mnt

    def _fill_volumes(self) -> None:
        """Background thread: keep `volume_pool` empty volumes ready per quota size in use."""
        while not self._closed:
            self._volumes_wanted.wait(timeout=1.0)
            self._volumes_wanted.clear()
            while not self._closed:
                with self._lock:
                    short = next((size for size, ready in self._ready_volumes.items()
                                  if len(ready) < self.volume_pool), None)
                if short is None:
                    break
                try:
                    mnt = self.volumes.create("p" + self._next_id(), short)
                except (SandboxError, OSError) as e:
                    log.debug("volume pool: %s", e)
                    break
                with self._lock:
                    if self._closed:
                        VolumeFactory.unmount(mnt)
                        return
                    self._ready_volumes[short].append(mnt)

    def _volume_of(self, path: str) -> str | None:
        """The mount point of the volume that `path` lies strictly inside, else None."""
        vdir = self.volumes.root + "/"
        if not path.startswith(vdir) or "/" not in path[len(vdir):]:
            return None
        return vdir + path[len(vdir):].split("/", 1)[0]

    def _release_volume(self, mnt: str) -> None:
        """Unmount a volume nothing uses any more (lazily: it leaves the mount table at once) and
        hand its image to the reaper."""
        self._volumes.pop(mnt, None)
        # Keep a handle on the file system past the unmount and empty it from there: deleting its
        # files drops their dirty pages, whereas letting it go full would first write them all
        # back through the loop device into an image that is deleted anyway (seconds after a
        # disk fill). The reaper closes the handle, which frees the file system and its device.
        root_fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        VolumeFactory.unmount(mnt)
        self._trash.put(root_fd)
        self._discard(mnt + ".img")
        self._discard(mnt)

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxError("this LocalBackend is closed; make a new one")

    # -- contract -----------------------------------------------------------------------------------

    def create(self, image: str | None = None, *, workdir: str = "/app",
               limits: SandboxLimits | None = None) -> LocalSandbox:
        """A fresh sandbox with empty persistent dirs. `image` must be None or "host"."""
        self._check_usable()
        if image not in (None, "host"):
            raise SandboxUnavailableError(
                f"the local sandbox backend runs the host's tools and cannot run the image {image!r}; "
                "pass image=None (or 'host'), or use the docker backend (sandbox='docker') for images")
        workdir = _validate_workdir(workdir)
        return self._start((self.empty_layer,), workdir, limits or self.limits, fresh=True)

    def fork(self, snapshot: Snapshot) -> LocalSandbox:
        self._check_usable()
        snap_id, _ = self._parse_ref(snapshot)
        with self._lock:
            record = self._snapshots.get(snap_id)
            if record is None:
                raise SandboxError(f"snapshot {snap_id} was released (or is not from this backend); "
                                   "take a new snapshot")
            return self._start(record.stack, snapshot.workdir, record.limits, fresh=False)

    def _start(self, stack: tuple[str, ...], workdir: str, limits: SandboxLimits, fresh: bool) -> LocalSandbox:
        with self._lock:
            sid = self._next_id()
            # Registered before the mount so that a concurrent GC keeps its layers.
            placeholder = _Pending(stack)
            self._sandboxes[sid] = placeholder  # type: ignore[assignment]
        try:
            sb = LocalSandbox(self, sid, stack, workdir, limits, fresh)
        except BaseException:
            with self._lock:
                self._sandboxes.pop(sid, None)
            raise
        with self._lock:
            self._sandboxes[sid] = sb
        return sb

    def _snapshot(self, sb: LocalSandbox, key: str) -> Snapshot:
        with self._lock:
            stack = sb._freeze()
            if len(stack) > self.max_layers or len(":".join(stack)) > _MAX_MOUNT_OPTIONS:
                stack = self._squash(stack)
            if stack != sb.stack or not sb._mounted:
                sb._remount(stack)
            snap_id = "s" + self._next_id()
            self._snapshots[snap_id] = _SnapshotRecord(stack, sb.limits)
            self._gc()
        return Snapshot(backend=self.name, ref=f"{snap_id}={':'.join(stack)}", workdir=sb.workdir, key=key)

    def _squash(self, stack: tuple[str, ...]) -> tuple[str, ...]:
        """One layer holding the merged view of `stack` (whiteouts applied, so none are left)."""
        layer = self._new_layer_path()
        view = os.path.join(self.root, "S", "squash-" + self._next_id())
        os.mkdir(view)
        try:
            _mount_overlay(stack if len(stack) > 1 else stack + (self.empty_layer,), None, None, view)
            try:
                subprocess.run(["cp", "-a", "--", view + "/.", layer], check=True, capture_output=True)
            finally:
                _unmount(view)
        except subprocess.CalledProcessError as e:
            shutil.rmtree(layer, ignore_errors=True)
            raise SandboxError(f"squashing {len(stack)} layers failed: {e.stderr.decode(errors='replace')}") from e
        finally:
            os.rmdir(view)
        self._layers.add(layer)
        log.debug("squashed %d layers into %s", len(stack), layer)
        return (layer,)

    def release(self, snapshot: Snapshot) -> None:
        snap_id, _ = self._parse_ref(snapshot)
        with self._lock:
            if self._snapshots.pop(snap_id, None) is not None:
                self._gc()

    def _parse_ref(self, snapshot: Snapshot) -> tuple[str, tuple[str, ...]]:
        if snapshot.backend != self.name:
            raise ValueError(f"snapshot of backend {snapshot.backend!r} given to the local backend")
        snap_id, sep, layers = snapshot.ref.partition("=")
        if not sep:
            raise ValueError(f"malformed local snapshot ref {snapshot.ref!r}")
        return snap_id, tuple(layers.split(":"))

    def _gc(self) -> None:
        """Delete layers that no unreleased snapshot and no live sandbox stands on."""
        used: set[str] = set()
        for record in self._snapshots.values():
            used.update(record.stack)
        for sb in self._sandboxes.values():
            used.update(sb.stack)
        for layer in self._layers - used:
            self._discard(layer)
            self._layers.discard(layer)
        live_volumes = {self._volume_of(layer) for layer in self._layers}
        for mnt, sandbox_open in list(self._volumes.items()):
            if not sandbox_open and mnt not in live_volumes:
                self._release_volume(mnt)

    def _forget(self, sb: LocalSandbox) -> None:
        with self._lock:
            if sb.volume in self._volumes:
                self._volumes[sb.volume] = False
            if self._sandboxes.get(sb.id) is sb:
                del self._sandboxes[sb.id]
            self._gc()

    def live_resources(self) -> list[str]:
        """What is running or mounted for this backend's sandboxes right now: overlay mounts and
        cgroups (snapshot layers are storage, not counted). Empty once every sandbox is closed;
        used by tests to prove that nothing leaks."""
        with self._lock:  # snapshot storage and the volume pool are not sandboxes
            storage = {mnt for mnt, sandbox_open in self._volumes.items() if not sandbox_open}
            storage.update(mnt for ready in self._ready_volumes.values() for mnt in ready)
        mounts = [m for m in (_mounts_under(self.root) if os.path.isdir(self.root) else []) if m not in storage]
        loops = [dev for dev, image in _settled_loops(self.root).items() if image[:-len(".img")] not in storage]
        return ([f"mount:{m}" for m in mounts] + [f"cgroup:{c}" for c in self.cgroups.live()]
                + [f"loop:{d}" for d in loops])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sb in list(self._sandboxes.values()):
                if isinstance(sb, LocalSandbox):
                    sb.close()
            self._snapshots.clear()
            self._layers.clear()
            self._ready_volumes.clear()
        self._volumes_wanted.set()
        if self._volume_filler is not None:
            self._volume_filler.join(timeout=30)
        with self._lock:
            for m in _mounts_under(self.root):
                _unmount(m, lazy=m.startswith(self.volumes.root + "/"))
            self._volumes.clear()
            self.cgroups.remove_parents()
            self._trash.put(None)
            self._reaper.join()
            shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    # -- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def host_root_processes() -> int:
        """Processes of uid 0 on the host (RLIMIT_NPROC counts them all; rlimit fallback only)."""
        count = 0
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.stat(f"/proc/{name}").st_uid == 0:
                        count += 1
                except FileNotFoundError:
                    pass
        return count

    def __repr__(self) -> str:
        return f"LocalBackend(root={self.root!r}, sandboxes={len(self._sandboxes)}, snapshots={len(self._snapshots)})"


class _Pending:
    """Stands in for a sandbox being started, so that GC sees the layers it is about to mount."""

    def __init__(self, stack: tuple[str, ...]):
        self.stack = stack


def _validate_workdir(workdir: str) -> str:
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise ValueError(f"workdir must be an absolute path, got {workdir!r}")
    norm = _norm(workdir)
    top = norm.strip("/").split("/")[0]
    if norm == "/" or top in HOST_SYSTEM_DIRS or top in ("proc", "dev", "sys", "var", "run"):
        raise ValueError(
            f"workdir {workdir!r} is inside the host system dirs the local backend binds read-only "
            f"(/{', /'.join(HOST_SYSTEM_DIRS)}, /var, /proc, /dev, /sys, /run); use a path such as /app "
            "or /workspace")
    if any(c in norm for c in ":,=\\"):
        raise ValueError(f"workdir {workdir!r} must not contain ':', ',', '=' or '\\'")
    return norm


def _host_binds(replaced: Mapping[str, str] | None = None) -> list[str]:
    """bwrap options that show the host's system dirs read-only (symlinks stay symlinks).
    `replaced` maps a host dir to the dir bound in its place (the filtered copy of /etc).

    Every bind costs a mount and a read-only remount at each exec (~0.2 ms, and several ms on a
    loaded host whose mount table is long), so /var is not bound whole (that would also drag in
    Docker's container mounts); only HOST_VAR_PATHS are."""
    replaced = replaced or {}
    args: list[str] = []
    for path in ["/" + name for name in HOST_SYSTEM_DIRS] + list(HOST_VAR_PATHS):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", replaced.get(path, path), path]
    return args + ["--symlink", "/run", "/var/run", "--symlink", "/run/lock", "/var/lock"]


def _secret(path: str, st: os.stat_result) -> bool:
    """Whether the local sandbox must not show `path`: listed in HOST_SECRETS, or a file or dir
    that "other" users may not read (uid 0 in the sandbox keeps owner access without capabilities)."""
    if path in HOST_SECRETS:
        return True
    return (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and not st.st_mode & 0o004


def _filtered_copy(src: str, dest: str) -> None:
    """Copy the tree `src` to `dest` without its secrets (`_secret`): the sandbox's /etc. One bind
    of a copy costs far less per exec than one masking bind per secret (each bind is a mount,
    ~5 ms on a loaded host); the price is that host changes to /etc after the backend started are
    not seen (3 MB, ~1,200 entries, copied once per backend)."""
    os.mkdir(dest)
    dirs = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target_dir = dest if rel == "." else os.path.join(dest, rel)
        keep = []
        for name in dirnames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(path), os.path.join(target_dir, name))
            elif not _secret(path, st):
                os.mkdir(os.path.join(target_dir, name))
                dirs.append((path, os.path.join(target_dir, name)))
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(path), os.path.join(target_dir, name))
                elif stat.S_ISREG(st.st_mode) and not _secret(path, st):
                    shutil.copy2(path, os.path.join(target_dir, name), follow_symlinks=False)
            except OSError as e:  # vanished meanwhile, or unreadable: leave it out
                log.debug("not copied into the sandbox /etc: %s (%s)", path, e)
    for host_dir, copy_dir in reversed(dirs):  # modes last: a read-only dir must be filled first
        shutil.copystat(host_dir, copy_dir, follow_symlinks=False)
    shutil.copystat(src, dest)


def _host_masks(stand_in_dir: str) -> list[str]:
    """bwrap options that hide host secrets under the read-only host binds other than /etc (a
    filtered copy) and /usr: HOST_SECRETS plus every non-empty file or dir there that "other" users
    may not read (empty lock files and dirs hold nothing). Each is covered by an empty stand-in
    with mode 000, one mount per exec each (3 on the dev host: debconf's passwords, ldconfig's
    cache, /opt/containerd)."""
    empty_file = os.path.join(stand_in_dir, "file")
    empty_dir = os.path.join(stand_in_dir, "dir")
    if not os.path.exists(empty_file):
        os.close(os.open(empty_file, os.O_CREAT | os.O_WRONLY, 0o000))
        os.mkdir(empty_dir, 0o000)
    bound = ["/" + n for n in HOST_SYSTEM_DIRS if os.path.isdir("/" + n) and not os.path.islink("/" + n)]
    bound += [p for p in HOST_VAR_PATHS if os.path.isdir(p)]
    found: set[str] = {p for p in HOST_SECRETS if any(_inside(p, b) for b in bound) and not _inside(p, "/etc")}
    for top in bound:
        if top in ("/usr", "/etc"):  # /usr: large, nothing secret; /etc: bound as a filtered copy
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                empty = st.st_size == 0 if stat.S_ISREG(st.st_mode) else (
                    stat.S_ISDIR(st.st_mode) and not os.listdir(path))
                if _secret(path, st) and not empty:
                    found.add(path)
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in found]
    args: list[str] = []
    for path in sorted(found):
        if any(o != path and _inside(path, o) for o in found) or not os.path.lexists(path):
            continue  # under a masked dir already, or absent
        if os.path.islink(path):
            continue  # a symlink's target is masked where it lies (if it is under a bound dir)
        stand_in = empty_dir if os.path.isdir(path) else empty_file
        args += ["--ro-bind", stand_in, path]
    return args


def _empty_dir_fd(dir_fd: int) -> None:
    """Delete everything inside the directory open as `dir_fd` (errors ignored)."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return
    for name in names:
        try:
            if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=True)
            else:
                os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass


def _settled_loops(root: str, wait_s: float = 10.0) -> dict[str, str]:
    """Loop devices still backed by files under `root` ({device: image}). A lazily unmounted volume
    frees its device a moment later (autoclear), so this waits up to `wait_s` for the devices of
    unmounted volumes to go before reporting."""
    deadline = time.monotonic() + wait_s
    while True:
        loops = loop_devices_backed_under(root)
        mounted = set(_mounts_under(root)) if os.path.isdir(root) else set()
        settling = [d for d, image in loops.items() if image[:-len(".img")] not in mounted]
        if not settling or time.monotonic() > deadline:
            return loops
        time.sleep(0.02)


def sweep_stale_roots(parent: str) -> int:
    """Remove state dirs (mounts, volumes, loop devices and cgroups included) left by backends
    whose process died; returns how many. Processes of a dead backend's sandboxes died with it
    (bwrap --die-with-parent); the cgroup sweep kills any that got away."""
    removed = 0
    try:
        names = [n for n in os.listdir(parent) if n.startswith("pivotrl-local-")]
    except OSError:
        return 0
    for name in names:
        root = os.path.join(parent, name)
        try:
            with open(os.path.join(root, "owner.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue  # owner alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        log.warning("removing the state of a dead local sandbox backend (pid %d): %s", pid, root)
        try:
            for m in _mounts_under(root):
                _unmount(m, lazy=True)
            _Cgroups(name).remove_parents()
        except (SandboxError, OSError) as e:
            log.warning("could not clean %s: %s", root, e)
            continue
        shutil.rmtree(root, ignore_errors=True)
        removed += 1
    return removed


def benchmark(n: int = 50, backend: LocalBackend | None = None) -> dict[str, float]:
    """p50 latency in milliseconds of create, exec, snapshot, fork+first exec and close (n runs each).

    A fork is measured as a warm reset is used: fork an existing snapshot, run one command.
    """
    import statistics

    own = backend is None
    be = backend or LocalBackend()
    times: dict[str, list[float]] = {k: [] for k in ("create", "exec", "snapshot", "fork_first_exec", "close")}
    try:
        with be.create() as base:
            base.exec("mkdir -p src && for i in $(seq 200); do echo line $i > src/f$i.txt; done")
            snap = base.snapshot()
            for _ in range(n):
                t0 = time.perf_counter()
                sb = be.create()
                t1 = time.perf_counter()
                sb.exec("echo hi > a.txt")
                t2 = time.perf_counter()
                s = sb.snapshot()
                t3 = time.perf_counter()
                sb.close()
                t4 = time.perf_counter()
                be.release(s)
                f = be.fork(snap)
                t5 = time.perf_counter()
                f.exec("cat src/f1.txt")
                t6 = time.perf_counter()
                f.close()
                times["create"].append(t1 - t0)
                times["exec"].append(t2 - t1)
                times["snapshot"].append(t3 - t2)
                times["close"].append(t4 - t3)
                times["fork_first_exec"].append(t6 - t5)
            be.release(snap)
    finally:
        if own:
            be.close()
    return {k: round(statistics.median(v) * 1000, 2) for k, v in times.items()}
