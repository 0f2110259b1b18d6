"""Size-limited disk volumes: one loop-mounted ext4 file system per sandbox (the disk quota).

Why this mechanism (measured on the dev VM, kernel 6.18, host / on ext4): the kernel here has no
XFS quota support (`XFS: quota support not available in this kernel`), so neither XFS project quotas
nor Docker's `storage_opt size=` (overlay2 on xfs+pquota) can work; ext4 quotas exempt holders of
CAP_SYS_RESOURCE, which overlayfs uses for copy-up; a size-limited tmpfs is charged to the sandbox's
memory cgroup, so a big write is OOM-killed rather than failing with ENOSPC, and it keeps every
snapshot in RAM. A file system of its own per sandbox is the one bound that always answers ENOSPC.

Cost: the file system is made once per size (`mkfs.ext4` without journal, lazy inode tables:
~150 KiB allocated for 1 GiB) and copied sparsely per volume (~0.1 ms); attaching a loop device
(LOOP_CONFIGURE, autoclear) and mounting it are direct syscalls (~1-4 ms together). Releasing is
a lazy unmount (the loop device frees itself when the file system lets go) plus an unlink of the
sparse image, done by the caller's reaper thread.

The image is sparse on the host disk: it occupies only what the sandbox wrote, at most its size.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import subprocess
import threading

from pivot_envs.errors import SandboxError, SandboxUnavailableError
from pivot_envs.sandbox import host

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LOOP_SET_FD = 0x4C00
_LOOP_SET_STATUS64 = 0x4C04
_LOOP_CLR_FD = 0x4C01
_LO_FLAGS_AUTOCLEAR = 4

MKFS_HINT = "install e2fsprogs (Debian/Ubuntu: `apt-get install e2fsprogs`) for mkfs.ext4"
MIN_DISK_MB = 8


def _loop_info64(flags: int) -> bytes:
    # struct loop_info64: 5 x u64, 4 x u32 (lo_number, encrypt type, key size, flags),
    # file name[64], crypt name[64], key[32], init[2] x u64  = 232 bytes
    return struct.pack("=QQQQQIIII64s64s32sQQ", 0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)


def _attach_loop(image_fd: int) -> tuple[str, int]:
    """Attach `image_fd` to a free loop device with autoclear; returns (device path, device fd).
    Other processes grab loop devices concurrently, so a device taken in between is retried."""
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise SandboxUnavailableError(
            f"cannot open /dev/loop-control ({e.strerror}): the sandbox disk quota needs loop devices "
            "(`modprobe loop`, root)") from e
    try:
        for _ in range(64):
            n = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            dev = f"/dev/loop{n}"
            try:
                fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # the node appears a moment after the device is made
            config = struct.pack("=II", image_fd, 0) + _loop_info64(_LO_FLAGS_AUTOCLEAR) + bytes(64)
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, config)
                return dev, fd
            except OSError as e:
                if e.errno == errno.EINVAL:  # kernel < 5.8: no LOOP_CONFIGURE; the two-step API
                    try:
                        fcntl.ioctl(fd, _LOOP_SET_FD, image_fd)
                        fcntl.ioctl(fd, _LOOP_SET_STATUS64, _loop_info64(_LO_FLAGS_AUTOCLEAR))
                        return dev, fd
                    except OSError as e2:
                        e = e2
                os.close(fd)
                if e.errno != errno.EBUSY:
                    raise SandboxError(f"cannot attach a loop device for a sandbox volume: {e.strerror}") from e
        raise SandboxError("no free loop device after 64 tries (too many sandboxes at once?)")
    finally:
        os.close(ctl)


def _sparse_copy(src: str, dst: str) -> int:
    """Copy `src` to a new file `dst`, data extents only (holes stay holes). Returns dst's fd."""
    s = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        d = os.open(dst, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.ftruncate(d, os.fstat(s).st_size)
        offset = 0
        while True:
            try:
                start = os.lseek(s, offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data after offset
                    break
                raise
            end = os.lseek(s, start, os.SEEK_HOLE)
            pos = start
            while pos < end:
                pos += os.copy_file_range(s, d, end - pos, pos, pos)
            offset = end
        return d
    finally:
        os.close(s)


class VolumeFactory:
    """Makes and releases the per-sandbox volumes of one backend, under `root`."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(root, exist_ok=True)
        self._templates: dict[int, str] = {}
        self._template_lock = threading.Lock()
        mkfs = shutil.which("mkfs.ext4") or shutil.which("mke2fs")
        if mkfs is None:
            raise SandboxUnavailableError(f"the sandbox disk quota needs mkfs.ext4; {MKFS_HINT}")
        self.mkfs: str = mkfs

    def _template(self, size_mb: int) -> str:
        with self._template_lock:  # the backend's pool thread and callers may ask at once
            path = self._templates.get(size_mb)
            if path is None:
                path = self._make_template(size_mb)
                self._templates[size_mb] = path
            return path

    def _make_template(self, size_mb: int) -> str:
        path = os.path.join(self.root, f"template-{size_mb}m.img")
        with open(path, "wb") as f:
            f.truncate(size_mb << 20)
        # No journal (a crash loses the sandbox anyway), no reserved blocks (root would get
        # more than the quota), lazy inode tables (mkfs writes almost nothing).
        proc = subprocess.run([self.mkfs, "-q", "-F", "-t", "ext4", "-m", "0", "-O", "^has_journal,^resize_inode",
                               "-E", "lazy_itable_init=1,nodiscard", path],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            os.unlink(path)
            raise SandboxUnavailableError(f"mkfs.ext4 failed for a {size_mb} MiB sandbox volume: "
                                          f"{proc.stderr.strip()[:500]}; {MKFS_HINT}")
        return path

    def create(self, name: str, size_mb: int) -> str:
        """A fresh, empty, mounted volume of `size_mb` MiB; returns its mount point."""
        if size_mb < MIN_DISK_MB:
            raise ValueError(f"disk quota must be at least {MIN_DISK_MB} MiB, got {size_mb}")
        mnt = os.path.join(self.root, name)
        image = mnt + ".img"
        os.mkdir(mnt)
        try:
            image_fd = _sparse_copy(self._template(size_mb), image)
            try:
                dev, dev_fd = _attach_loop(image_fd)
            finally:
                os.close(image_fd)
            try:
                err = host.mount(dev, mnt, "ext4", host.MS_NOSUID | host.MS_NODEV | host.MS_NOATIME, "")
                if err:
                    raise SandboxError(f"mounting the sandbox volume {image} failed: {os.strerror(err)}")
            finally:
                os.close(dev_fd)  # autoclear: the device now lives exactly as long as the mount
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(image)
            with contextlib.suppress(OSError):
                os.rmdir(mnt)
            raise
        os.chmod(mnt, 0o700)
        return mnt

    @staticmethod
    def unmount(mnt: str) -> None:
        """Unmount the volume at `mnt` lazily: it leaves the mount table at once, and the file system
        and its loop device are freed when the last user (an overlay still stacked on one of its
        layers) lets go. The caller deletes the mount point and the image (`mnt + ".img"`)."""
        err = host.umount(mnt, lazy=True)
        if err and err != errno.EINVAL:  # EINVAL: not mounted (already released)
            raise SandboxError(f"cannot unmount sandbox volume {mnt}: {os.strerror(err)}")


def loop_devices_backed_under(root: str) -> dict[str, str]:
    """Loop devices whose backing file lies under `root`, as {device: backing file} (for leak checks
    and the reaper). A deleted backing file is reported with its old path."""
    prefix = root.rstrip("/") + "/"
    out: dict[str, str] = {}
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return out
    for name in names:
        if not name.startswith("loop"):
            continue
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                backing = f.read().strip().removesuffix(" (deleted)")
        except OSError:
            continue
        if backing.startswith(prefix):
            out[f"/dev/{name}"] = backing
    return dict(sorted(out.items()))
