"""The disk quota of a docker sandbox: its container's writable layer on a size-limited volume.

Docker's own `storage_opt size=` would need overlay2 on XFS with project quotas, which the dev
kernel lacks (volumes.py says why no other bound works). Instead, a fresh ext4 volume of the
quota's size is bind-mounted over the created (not yet started) container's overlay2 layer dir.
"""

from __future__ import annotations

import os
import posixpath
import shutil

from pivot_envs.errors import SandboxError
from pivot_envs.sandbox import host
from pivot_envs.sandbox.volumes import VolumeFactory


def quota_supported(client, docker) -> tuple[bool, str]:
    """Whether quotas work with this daemon (its overlay2 storage reachable as root on this host),
    and why not."""
    try:
        info = client.info()
    except docker.errors.APIError as e:
        return False, f"docker info failed: {e}"
    root = os.path.join(info.get("DockerRootDir", "/var/lib/docker"), "overlay2")
    if info.get("Driver") != "overlay2":
        return False, f"storage driver {info.get('Driver')!r} (need overlay2)"
    if os.geteuid() != 0 or not os.path.isdir(root):
        return False, f"the daemon's {root} is not reachable as root from this process (remote daemon?)"
    return True, ""


def attach_quota(container, volumes: VolumeFactory, disk_mb: int) -> str:
    """Put the created (not yet started) container's writable layer on a volume of `disk_mb`
    MiB; returns the layer dir it covers. A fresh ext4 volume gets a copy of the layer dir's few
    entries (empty diff/ and work/, the `link` and `lower` files) and is bind-mounted over that dir,
    so the overlay the daemon mounts at start has its upper dir there. A write past the quota fails
    with ENOSPC; `docker commit` reads the upper dir as usual; the daemon's removal of the layer dir
    unmounts the bind (and the loop device frees itself)."""
    data = container.attrs.get("GraphDriver", {})
    if data.get("Name") != "overlay2" or not data.get("Data", {}).get("UpperDir"):
        container.reload()
        data = container.attrs.get("GraphDriver", {})
    layer_dir = posixpath.dirname(data["Data"]["UpperDir"])
    mnt = volumes.create(container.id[:16], disk_mb)
    try:
        shutil.copytree(layer_dir, mnt, symlinks=True, dirs_exist_ok=True)
        err = host.mount(mnt, layer_dir, None, host.MS_BIND, None)
        if err:
            raise SandboxError(f"binding the quota volume over {layer_dir} failed: {os.strerror(err)}")
    finally:
        # Only the bind over the layer dir stays; the image is open by the loop device.
        VolumeFactory.unmount(mnt)
        os.unlink(mnt + ".img")
        os.rmdir(mnt)
    return layer_dir


def detach_quota(layer_dir: str) -> None:
    """Drop the bind over a removed container's layer dir (normally the daemon did it already)."""
    host.umount(layer_dir, lazy=True)
