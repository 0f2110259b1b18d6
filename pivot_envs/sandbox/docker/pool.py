"""The fork pool of the docker backend: containers started ahead per recently forked snapshot.

Starting a container costs ~0.2 s (create 13 ms + start ~200 ms), above the 150 ms warm-reset
goal. So the backend keeps `size` already started containers per recently forked spec (at most
`images` specs; the least recently forked loses its pool), filled by one background thread:
`fork()` takes a ready one when there is one (a pool hit, ~2 ms) and otherwise starts one
synchronously (a miss). Hits and misses are counted in `backend.stats`. Only forks are pooled: a
snapshot is forked again and again (G rollouts per pivot state), while `create()` specs are mostly
one-offs whose pool would be waste.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING

from pivot_envs.sandbox.docker.sandbox import Spec

if TYPE_CHECKING:
    from pivot_envs.sandbox.docker.backend import DockerBackend

log = logging.getLogger(__name__)


class ContainerPool:
    """Started containers per spec, for one backend (whose lock guards the pool too)."""

    def __init__(self, backend: DockerBackend, size: int, images: int):
        self._backend = backend
        self._lock = backend._lock
        self.size = max(0, int(size))
        self.images = max(1, int(images))
        self._ready: collections.OrderedDict[Spec, collections.deque] = collections.OrderedDict()
        self._wanted = threading.Event()   # the filler has work
        self._stopping = threading.Event()
        self._filler: threading.Thread | None = None

    def take(self, spec: Spec):
        """A started container for `spec` from the pool, or None (a miss); either way the pool of
        `spec` becomes the most recently used one and is refilled in the background."""
        if not self.size:
            return None
        container = None
        with self._lock:
            ready = self._ready.get(spec)
            if ready is None:
                ready = self._ready[spec] = collections.deque()
            self._ready.move_to_end(spec)
            while len(self._ready) > self.images:  # drop the coldest image's pool
                _, cold = self._ready.popitem(last=False)
                self._drain(cold)
            if ready:
                container = ready.popleft()
        self._backend.stats["pool_hits" if container is not None else "pool_misses"] += 1
        self._ensure_filler()
        self._wanted.set()
        return container

    def warm(self, spec: Spec) -> None:
        """Start containers for `spec` ahead of its first fork."""
        if not self.size:
            return
        with self._lock:
            self._ready.setdefault(spec, collections.deque())
            self._ready.move_to_end(spec)
        self._ensure_filler()
        self._wanted.set()

    def drop(self, spec: Spec) -> None:
        """Remove the pool of `spec` (its snapshot was released)."""
        with self._lock:
            queue = self._ready.pop(spec, None)
        if queue:
            self._drain(queue)

    def stop(self) -> None:
        """Stop the filler and remove every pooled container."""
        self._stopping.set()
        self._wanted.set()
        try:
            if self._filler is not None:
                self._filler.join(timeout=30)
        finally:
            with self._lock:
                queues = list(self._ready.values())
                self._ready.clear()
            for ready in queues:
                self._drain(ready)

    def _ensure_filler(self) -> None:
        with self._lock:
            if self._filler is None and not self._backend._closed:
                self._filler = threading.Thread(target=self._fill_loop, daemon=True,
                                                name=f"pivotrl-docker-pool-{self._backend.instance_id}")
                self._filler.start()

    def _next_shortfall(self) -> Spec | None:
        """The most recently used spec whose pool is not full, or None."""
        with self._lock:
            for spec in reversed(self._ready):
                if len(self._ready[spec]) < self.size:
                    return spec
        return None

    def _fill_loop(self) -> None:
        """Background thread: keep every pooled spec at `size` started containers."""
        be = self._backend
        while not self._stopping.is_set():
            self._wanted.wait(timeout=1.0)
            self._wanted.clear()
            while not self._stopping.is_set():
                spec = self._next_shortfall()
                if spec is None:
                    break
                try:
                    container = be._start(spec, for_pool=True)
                except Exception as e:  # noqa: BLE001 - image released meanwhile, daemon hiccup: stop filling it
                    log.debug("pool: cannot start a container for %s: %s", spec.image, e)
                    with self._lock:
                        self._ready.pop(spec, None)
                    continue
                with self._lock:
                    queue = self._ready.get(spec)
                    if be._closed or queue is None or len(queue) >= self.size:
                        queue = None
                    else:
                        queue.append(container)
                if queue is None:  # nobody wants it any more
                    be._remove_now(container)
                    if spec.image in be._unremoved:  # its release waited for this container
                        be._remove_image(spec.image)

    def _drain(self, queue: collections.deque) -> None:
        while queue:
            self._backend._remove_now(queue.popleft())
