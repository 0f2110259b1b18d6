"""The disk-quota volumes of one local backend (volumes.py makes each): one per sandbox, holding its
upper dir and the layers frozen from it, plus `size` empty volumes kept mounted ahead per quota
size in use, so that a fork does not wait for one (~5-10 ms: image copy, loop device, mount).

A volume stays mounted while a snapshot stands on its layers, and is released (lazily unmounted,
emptied and deleted by the trash reaper) once neither its sandbox nor any layer on it is left.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable

from pivot_envs.sandbox import host
from pivot_envs.sandbox.local.layers import Trash
from pivot_envs.sandbox.ready_pool import ReadyPool
from pivot_envs.sandbox.volumes import VolumeFactory, loop_devices_backed_under


class VolumePool:
    """Volumes under `root`. `lock` is the backend's: a volume's state changes together with the
    backend's layer and sandbox bookkeeping. The empty volumes kept ahead are a `ReadyPool` keyed by
    quota size (the same class as the backends' fork pools)."""

    def __init__(self, root: str, size: int, lock: threading.RLock, trash: Trash,
                 discard: Callable[[str], None], next_id: Callable[[], str],
                 stats: collections.Counter[str], name: str):
        self.factory = VolumeFactory(root)
        self.root = self.factory.root
        self._lock = lock
        self._trash = trash
        self._discard = discard
        self.in_use: dict[str, bool] = {}  # volume mount point -> its sandbox is still open
        self.closed = False
        self.ready: ReadyPool[int, str] = ReadyPool(  # quota MiB -> mounted, empty volumes
            size=size, keys=4, lock=lock, stats=stats, start=lambda size_mb: self.factory.create("p" + next_id(), size_mb),
            discard=lambda _size, mnt: self._release(mnt), closed=lambda: self.closed, thread_name=name,
            stats_prefix="volume_pool")

    def take(self, sid: str, size_mb: int) -> str:
        """A mounted, empty volume of `size_mb` MiB for sandbox `sid`: a pooled one when ready."""
        mnt = self.ready.take(size_mb)
        if mnt is None:
            mnt = self.factory.create("v" + sid, size_mb)
        with self._lock:
            self.in_use[mnt] = True
        return mnt

    def volume_of(self, path: str) -> str | None:
        """The mount point of the volume that `path` lies strictly inside, else None."""
        vdir = self.root + "/"
        if not path.startswith(vdir) or "/" not in path[len(vdir):]:
            return None
        return vdir + path[len(vdir):].split("/", 1)[0]

    def sandbox_closed(self, mnt: str) -> None:
        if mnt in self.in_use:
            self.in_use[mnt] = False

    def release_unused(self, live_volumes: set[str | None]) -> None:
        """Release the volumes whose sandbox is closed and that hold none of `live_volumes`' layers."""
        for mnt, sandbox_open in list(self.in_use.items()):
            if not sandbox_open and mnt not in live_volumes:
                self._release(mnt)

    def _release(self, mnt: str) -> None:
        """Unmount a volume nothing uses any more (lazily: it leaves the mount table at once) and
        hand its image to the reaper."""
        self.in_use.pop(mnt, None)
        # Keep a handle on the file system past the unmount and empty it from there: deleting its
        # files drops their dirty pages, whereas letting it go full would first write them all
        # back through the loop device into an image that is deleted anyway (seconds after a
        # disk fill). The reaper closes the handle, which frees the file system and its device.
        root_fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        VolumeFactory.unmount(mnt)
        self._trash.empty_and_close(root_fd)
        self._discard(mnt + ".img")
        self._discard(mnt)

    def storage(self) -> set[str]:
        """Volumes that are storage, not sandboxes: those of snapshots and the ready ones."""
        with self._lock:
            held = {mnt for mnt, sandbox_open in self.in_use.items() if not sandbox_open}
        return held | set(self.ready.items())

    def stop(self) -> None:
        """Stop the filler and drop the ready volumes (the backend unmounts the others afterwards)."""
        self.closed = True
        self.ready.stop()


def settled_loops(root: str, wait_s: float = 10.0) -> dict[str, str]:
    """Loop devices still backed by files under `root` ({device: image}). A lazily unmounted volume
    frees its device a moment later (autoclear), so this waits up to `wait_s` for the devices of
    unmounted volumes to go before reporting."""
    deadline = time.monotonic() + wait_s
    while True:
        loops = loop_devices_backed_under(root)
        mounted = set(host.mounts_under(root)) if os.path.isdir(root) else set()
        settling = [d for d, image in loops.items() if image[:-len(".img")] not in mounted]
        if not settling or time.monotonic() > deadline:
            return loops
        time.sleep(0.02)
