"""Host-side helpers every sandbox backend needs: mount syscalls, the mount table, state dirs owned
by a process (and the sweep of those whose process died), and the disk-full rule of a quota volume.

The backends mount and unmount through libc directly (no `mount` process to start: a fork of the
local backend costs about a millisecond). Every state dir a backend makes holds an `owner.pid`
file; a dir whose owner no longer runs is a killed run's leftover, which the next backend of the
same kind (or `pivotrl sandbox gc`) removes, never touching a live process's sandboxes.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
from collections.abc import Callable

from pivot_envs.errors import SandboxError

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOATIME = 0x400
MS_BIND = 0x1000
MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)

OWNER_FILE = "owner.pid"

#: A quota volume with less free space than this (or 1% of its quota, if more) counts as full:
#: writers in 1 MiB blocks (dd, cp) stop within a block of the end.
DISK_FULL_SLACK_BYTES = 1 << 20


def _b(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def mount(source: str | bytes | None, target: str, fstype: str | bytes | None, flags: int,
          options: str | bytes | None) -> int:
    """mount(2); returns 0, or the errno it failed with (callers word their own error)."""
    if _libc.mount(_b(source), target.encode(), _b(fstype), flags, _b(options)) == 0:
        return 0
    return ctypes.get_errno()


def umount(target: str, *, lazy: bool = False) -> int:
    """umount2(2) (MNT_DETACH when `lazy`); returns 0, or the errno (EINVAL: not mounted)."""
    if _libc.umount2(target.encode(), MNT_DETACH if lazy else 0) == 0:
        return 0
    return ctypes.get_errno()


def mounts_under(root: str) -> list[str]:
    """Mount points at or below `root`, deepest first (from /proc/self/mountinfo)."""
    prefix = root.rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(prefix):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists (one of another user's counts as alive: never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_owner(state_dir: str) -> None:
    """Mark `state_dir` as this process's (see `sweep_dead_owners`)."""
    with open(os.path.join(state_dir, OWNER_FILE), "w") as f:
        f.write(str(os.getpid()))


def sweep_dead_owners(parent: str, prefix: str, clean: Callable[[str], None] | None = None) -> int:
    """Remove the state dirs `parent/<prefix>*` whose owner process died; returns how many.

    For each, `clean(dir)` runs first (release what the dir's files back: cgroups, ...); then every
    mount under it is detached and the dir deleted. A dir whose `clean` fails is left for later.
    Dirs without a readable owner file are not ours to judge and stay."""
    removed = 0
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return 0
    for name in names:
        root = os.path.join(parent, name)
        try:
            with open(os.path.join(root, OWNER_FILE)) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if pid_alive(pid):
            continue
        log.warning("removing the state of a dead pivotrl sandbox backend (pid %d): %s", pid, root)
        try:
            for point in mounts_under(root):
                err = umount(point, lazy=True)
                if err not in (0, errno.EINVAL):
                    raise SandboxError(f"cannot unmount {point}: {os.strerror(err)}")
            if clean is not None:
                clean(root)
        except (SandboxError, OSError) as e:
            log.warning("could not clean %s: %s", root, e)
            continue
        shutil.rmtree(root, ignore_errors=True)
        removed += 1
    return removed


def disk_full(volume: str, quota_mb: int) -> bool:
    """Whether the quota volume mounted at `volume` is (all but) used up: less than one block's
    worth (or 1% of `quota_mb`) or no inode left. A write past the quota has failed with ENOSPC then."""
    st = os.statvfs(volume)
    free, inodes = st.f_bavail * st.f_frsize, st.f_favail
    return free < max(DISK_FULL_SLACK_BYTES, (quota_mb << 20) // 100) or inodes == 0
