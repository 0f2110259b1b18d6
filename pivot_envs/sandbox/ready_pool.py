"""Sandboxes started ahead per recently forked snapshot, filled by one background thread.

Both backends use it for `fork()`: a snapshot is forked again and again (G rollouts per pivot state,
the next episode of the same task), so a started sandbox handed out from the pool takes the start off
the reset's critical path (docker: create + start ~0.2 s; local: overlay mount, cgroup and the first
exec's `bwrap` setup ~10 ms). `take()` returns a ready item when there is one (a pool hit) and
otherwise None (a miss: the caller starts one itself); either way the key becomes the most recently
used one and the thread refills it. At most `keys` keys hold a pool; the least recently forked one
loses it. `create()` specs are mostly one-offs and are not pooled.

Which keys get a pool: with `fill_on_take` (docker) every forked key; without it (local) only keys
`warm()` named (episode resets), because there a refill running beside the caller's next command costs
more than it saves: sequential verdicts at one state ran at 41/s with the pool and 50/s without (the
refill's mount and bwrap start competed with each command for the 2 cores), while an episode reset after
an episode's worth of pause took 5.8 ms instead of 24.

What the pool holds is a cache, not a sandbox of anyone's: backends leave it out of their
`live_resources()` and empty it in `drop()` (snapshot released) and `stop()` (backend closed).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class ReadyPool(Generic[K, T]):
    """`size` started items per recently used key (hits and misses counted in `stats` as
    `<stats_prefix>_hits` / `_misses`).

    start(key): start one item for key (called on the filler thread; raising stops filling that key).
    discard(key, item): dispose of an item nobody will take (dropped key, stopped pool, a full queue).
    closed(): whether the owner is closed (the filler then starts nothing more).
    """

    def __init__(self, *, size: int, keys: int, lock: threading.RLock, stats: collections.Counter,
                 start: Callable[[K], T], discard: Callable[[K, T], None], closed: Callable[[], bool],
                 thread_name: str, fill_on_take: bool = True, stats_prefix: str = "pool"):
        self.size = max(0, int(size))
        self.keys = max(1, int(keys))
        self._lock = lock
        self._stats = stats
        self._start = start
        self._discard = discard
        self._closed = closed
        self._thread_name = thread_name
        self.fill_on_take = fill_on_take
        self._hit, self._miss = f"{stats_prefix}_hits", f"{stats_prefix}_misses"
        self._ready: collections.OrderedDict[K, collections.deque[T]] = collections.OrderedDict()
        self._wanted = threading.Event()  # the filler has work
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None

    def take(self, key: K) -> T | None:
        """A ready item for `key`, or None (a miss); either way `key` becomes the most recently used
        key and is refilled in the background."""
        if not self.size:
            return None
        item = None
        with self._lock:
            ready = self._ready.get(key)
            if ready is None and not self.fill_on_take:
                return None  # not a pooled key (see the module docstring)
            if ready is None:
                ready = self._ready[key] = collections.deque()
            self._ready.move_to_end(key)
            evicted = []
            while len(self._ready) > self.keys:  # the coldest key loses its pool
                evicted.append(self._ready.popitem(last=False))
            if ready:
                item = ready.popleft()
        for old_key, queue in evicted:
            self._drain(old_key, queue)
        self._stats[self._hit if item is not None else self._miss] += 1
        self._kick()
        return item

    def warm(self, key: K) -> None:
        """Start items for `key` ahead of its first fork."""
        if not self.size:
            return
        with self._lock:
            self._ready.setdefault(key, collections.deque())
            self._ready.move_to_end(key)
        self._kick()

    def drop(self, key: K) -> None:
        """Remove the pool of `key` (its snapshot was released)."""
        with self._lock:
            queue = self._ready.pop(key, None)
        if queue:
            self._drain(key, queue)

    def items(self) -> list[T]:
        """The items waiting in the pool now."""
        with self._lock:
            return [item for queue in self._ready.values() for item in queue]

    def stop(self) -> None:
        """Stop the filler and dispose of every pooled item."""
        self._stopping.set()
        self._wanted.set()
        try:
            if self._filler is not None:
                self._filler.join(timeout=30)
        finally:
            with self._lock:
                pools = list(self._ready.items())
                self._ready.clear()
            for key, queue in pools:
                self._drain(key, queue)

    def _kick(self) -> None:
        with self._lock:
            if self._filler is None and not self._closed():
                self._filler = threading.Thread(target=self._fill_loop, daemon=True, name=self._thread_name)
                self._filler.start()
        self._wanted.set()

    def _next_shortfall(self) -> K | None:
        """The most recently used key whose pool is not full, or None."""
        with self._lock:
            for key in reversed(self._ready):
                if len(self._ready[key]) < self.size:
                    return key
        return None

    def _fill_loop(self) -> None:
        """Background thread: keep every pooled key at `size` ready items."""
        while not self._stopping.is_set():
            self._wanted.wait(timeout=1.0)
            self._wanted.clear()
            while not self._stopping.is_set():
                key = self._next_shortfall()
                if key is None:
                    break
                try:
                    item = self._start(key)
                except Exception as e:  # noqa: BLE001 - snapshot released meanwhile, daemon hiccup: stop filling it
                    log.debug("%s: cannot start an item for %s: %s", self._thread_name, key, e)
                    with self._lock:
                        self._ready.pop(key, None)
                    continue
                with self._lock:
                    queue = self._ready.get(key)
                    keep = not self._closed() and queue is not None and len(queue) < self.size
                    if keep and queue is not None:
                        queue.append(item)
                if not keep:  # nobody wants it any more
                    self._discard(key, item)

    def _drain(self, key: K, queue: collections.deque[T]) -> None:
        while queue:
            self._discard(key, queue.popleft())
