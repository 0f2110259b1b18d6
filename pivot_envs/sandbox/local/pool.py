"""The disk-quota volumes of one local backend (volumes.py makes each): one per sandbox, holding its
upper dir and the layers frozen from it, plus `size` empty volumes kept mounted ahead per quota
size in use, so that a fork does not wait for one (~5-10 ms: image copy, loop device, mount).

A volume stays mounted while a snapshot stands on its layers, and is released (lazily unmounted,
emptied and deleted by the trash reaper) once neither its sandbox nor any layer on it is left.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable

from pivot_envs.errors import SandboxError
from pivot_envs.sandbox import host
from pivot_envs.sandbox.local.layers import Trash
from pivot_envs.sandbox.volumes import VolumeFactory, loop_devices_backed_under

log = logging.getLogger(__name__)


class VolumePool:
    """Volumes under `root`. `lock` is the backend's: a volume's state changes together with the
    backend's layer and sandbox bookkeeping."""

    def __init__(self, root: str, size: int, lock: threading.RLock, trash: Trash,
                 discard: Callable[[str], None], next_id: Callable[[], str],
                 stats: collections.Counter[str], name: str):
        self.factory = VolumeFactory(root)
        self.root = self.factory.root
        self.size = max(0, int(size))
        self._lock = lock
        self._trash = trash
        self._discard = discard
        self._next_id = next_id
        self._stats = stats
        self._name = name
        self.in_use: dict[str, bool] = {}  # volume mount point -> its sandbox is still open
        self.ready: dict[int, list[str]] = {}  # quota MiB -> mounted, empty volumes
        self._wanted = threading.Event()
        self._filler: threading.Thread | None = None
        self.closed = False

    def take(self, sid: str, size_mb: int) -> str:
        """A mounted, empty volume of `size_mb` MiB for sandbox `sid`: a pooled one when ready."""
        mnt = None
        if self.size:
            with self._lock:
                ready = self.ready.setdefault(size_mb, [])
                if ready:
                    mnt = ready.pop()
                if self._filler is None and not self.closed:
                    self._filler = threading.Thread(target=self._fill, daemon=True, name=self._name)
                    self._filler.start()
            self._stats["volume_pool_hits" if mnt else "volume_pool_misses"] += 1
            self._wanted.set()
        if mnt is None:
            mnt = self.factory.create("v" + sid, size_mb)
        with self._lock:
            self.in_use[mnt] = True
        return mnt

    def _fill(self) -> None:
        """Background thread: keep `size` empty volumes ready per quota size in use."""
        while not self.closed:
            self._wanted.wait(timeout=1.0)
            self._wanted.clear()
            while not self.closed:
                with self._lock:
                    short = next((size for size, ready in self.ready.items() if len(ready) < self.size), None)
                if short is None:
                    break
                try:
                    mnt = self.factory.create("p" + self._next_id(), short)
                except (SandboxError, OSError) as e:
                    log.debug("volume pool: %s", e)
                    break
                with self._lock:
                    if self.closed:
                        VolumeFactory.unmount(mnt)
                        return
                    self.ready[short].append(mnt)

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
            held.update(mnt for ready in self.ready.values() for mnt in ready)
        return held

    def stop(self) -> None:
        """Stop the filler (the backend unmounts every volume afterwards)."""
        with self._lock:
            self.closed = True
            self.ready.clear()
        self._wanted.set()
        if self._filler is not None:
            self._filler.join(timeout=30)


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
