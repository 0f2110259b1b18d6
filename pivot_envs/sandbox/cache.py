"""Snapshot cache: the sandbox state after the demonstration's actions 0..k-1, keyed by
(backend, image identity, task key, hash of those actions). The image identity is the backend's
`image_identity` (docker: the image ID, not its tag), so an image rebuilt under the same name gets
snapshots of its own instead of the old image's.

A cold reset to turn k replays the missing actions once, from the deepest cached ancestor, and
snapshots every intermediate turn on the way; afterwards a reset to ANY turn of that trajectory is a
fork of a cached snapshot, so it costs the same whatever k is.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pivot_envs.sandbox.base import Sandbox, SandboxBackend, SandboxLimits, Snapshot
from pivot_envs.trajectory import action_hash

log = logging.getLogger(__name__)


class SnapshotCache:
    """An LRU map from state keys to snapshots of one backend.

    Args:
        backend: where snapshots live and are forked.
        max_entries: snapshots kept; the least recently used are released beyond this.
    """

    def __init__(self, backend: SandboxBackend, max_entries: int = 4096):
        self.backend = backend
        self.max_entries = max_entries
        self._snaps: collections.OrderedDict[str, Snapshot] = collections.OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0
        self.replayed_actions = 0
        self.replay_seconds = 0.0

    def key(self, image: str | None, task_key: str, actions: Sequence[dict], *, identity: str | None = None) -> str:
        """The state's key; `identity` is `backend.image_identity(image)` when the caller has it."""
        ident = self.backend.image_identity(image) if identity is None else identity
        raw = f"{self.backend.name}|{ident}|{task_key}|{action_hash(actions)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def get(self, key: str) -> Snapshot | None:
        with self._lock:
            snap = self._snaps.get(key)
            if snap is not None:
                self._snaps.move_to_end(key)
            return snap

    def _put(self, key: str, snap: Snapshot) -> None:
        self._snaps[key] = snap
        self._snaps.move_to_end(key)
        while len(self._snaps) > self.max_entries:
            _, old = self._snaps.popitem(last=False)
            self.backend.release(old)

    def state_at(self, *, image: str | None, task_key: str, actions: Sequence[dict], workdir: str = "/app",
                 limits: SandboxLimits | None = None, prepare: Callable[[Sandbox], None],
                 apply: Callable[[Sandbox, dict, int], Any]) -> Snapshot:
        """The snapshot after `prepare` (task setup) and `apply` of each of `actions`, in order.

        `prepare(sandbox)` runs once per task on a fresh sandbox; `apply(sandbox, action, index)` runs
        one demonstration action. Both raise on infrastructure failure (nothing is cached then).
        """
        k = len(actions)
        identity = self.backend.image_identity(image)  # looked up once per reset
        keys = [self.key(image, task_key, actions[:i], identity=identity) for i in range(k + 1)]
        with self._lock:
            snap = self.get(keys[k])
            if snap is not None:
                self.hits += 1
                return snap
            self.misses += 1
            start = next((i for i in range(k, -1, -1) if keys[i] in self._snaps), None)
            t0 = time.perf_counter()
            if start is None:
                box = self.backend.create(image, workdir=workdir, limits=limits)
            else:
                box = self.backend.fork(self._snaps[keys[start]])
            try:
                if start is None:
                    prepare(box)
                    self._put(keys[0], box.snapshot(keys[0]))
                    start = 0
                for i in range(start, k):
                    apply(box, actions[i], i)
                    self.replayed_actions += 1
                    self._put(keys[i + 1], box.snapshot(keys[i + 1]))
            finally:
                box.close()
                self.replay_seconds += time.perf_counter() - t0
            return self._snaps[keys[k]]

    def clear(self) -> None:
        with self._lock:
            for snap in self._snaps.values():
                self.backend.release(snap)
            self._snaps.clear()

    def stats(self) -> dict[str, float]:
        return {"entries": len(self._snaps), "hits": self.hits, "misses": self.misses,
                "replayed_actions": self.replayed_actions, "replay_seconds": round(self.replay_seconds, 3)}
