"""Overlay mounts of the local backend: a sandbox's merged view over its layer stack.

Direct syscalls (pivot_envs/sandbox/host.py): no `mount` process to start, so a fork costs about a
millisecond.
"""

from __future__ import annotations

import errno
import logging
import os

from pivot_envs.errors import SandboxError, SandboxUnavailableError
from pivot_envs.sandbox import host

log = logging.getLogger(__name__)

#: The legacy mount(2) API passes the options in one page; keep the lowerdir list well below it.
MAX_MOUNT_OPTIONS = 3500

_volatile_ok = True  # overlay's `volatile` option (Linux >= 5.10); cleared on the first EINVAL


def mount_overlay(lowers: tuple[str, ...], upper: str | None, work: str | None, target: str) -> None:
    """Mount an overlay at `target` (read-only when `upper` is None)."""
    opts = "lowerdir=" + ":".join(lowers)
    if upper is not None:
        # volatile: never sync the upper dir to disk (unmount and snapshot stay fast); a crash
        # loses the sandbox anyway, and leftovers are swept by the next backend.
        opts += f",upperdir={upper},workdir={work}"
    flags = host.MS_NOSUID | host.MS_NODEV | (0 if upper is not None else host.MS_RDONLY)
    global _volatile_ok
    if upper is not None and _volatile_ok:
        volatile_errno = host.mount("overlay", target, "overlay", flags, opts + ",volatile")
        if volatile_errno == 0:
            return
    else:
        volatile_errno = 0
    err = host.mount("overlay", target, "overlay", flags, opts)
    if err == 0:
        if volatile_errno == errno.EINVAL:
            _volatile_ok = False  # kernel < 5.10 has no `volatile`: mount without it from now on
            log.info("overlayfs has no 'volatile' option here; unmounts will sync the upper dirs")
        return
    raise SandboxUnavailableError(
        f"overlay mount at {target} failed: {os.strerror(err)} (options {opts[:200]}...). The local "
        "backend needs root (or CAP_SYS_ADMIN) and a kernel with overlayfs (`modprobe overlay`); "
        "its state dir must be on a file system overlayfs accepts as upper (ext4, xfs, tmpfs; not "
        "overlayfs itself: set PIVOTRL_CACHE to such a directory)")


def unmount(target: str, lazy: bool = False) -> None:
    """Unmount `target` (a no-op when it is not mounted); a busy mount is detached lazily."""
    err = host.umount(target, lazy=lazy)
    if err == 0 or err == errno.EINVAL:  # EINVAL: not mounted
        return
    if err == errno.EBUSY:
        log.warning("mount %s busy; detaching it lazily", target)
        err = host.umount(target, lazy=True)
        if err == 0:
            return
    raise SandboxError(f"cannot unmount {target}: {os.strerror(err)}")
