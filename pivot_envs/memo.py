"""`OnceMemo`: values computed once per key, even when several threads ask for the same key at the
same time (the verifiers' per-state reference runs, which a group's actions judged in parallel
all need): the first caller computes, the others wait for its result instead of computing it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class OnceMemo(Generic[V]):
    """A thread-safe memo with one computation in flight per key.

    `get(key, compute, keep)`: the kept value for `key`, else `compute()`'s. A value `keep` rejects
    (an infrastructure failure, which may not repeat) is returned to its caller but not kept; a
    caller that waited for it then computes again, one at a time, as it would have alone. When
    `compute` raises, the exception goes to its caller and the waiters compute again."""

    def __init__(self) -> None:
        self._values: dict[Hashable, V] = {}
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def get(self, key: Hashable, compute: Callable[[], V], keep: Callable[[V], bool] = lambda _: True) -> V:
        while True:
            with self._lock:
                if key in self._values:
                    return self._values[key]
                running = self._pending.get(key)
                if running is None:
                    done = self._pending[key] = threading.Event()
            if running is not None:
                running.wait()
                continue  # kept by then, or not: look again
            try:
                value = compute()
                with self._lock:
                    if keep(value):
                        self._values[key] = value
                return value
            finally:
                with self._lock:
                    del self._pending[key]
                done.set()
