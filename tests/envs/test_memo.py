"""`OnceMemo`: one computation per key when threads ask at once; failures are not kept."""

from __future__ import annotations

import threading
import time

import pytest

from pivot_envs.memo import OnceMemo


def test_threads_asking_at_once_share_one_computation():
    memo: OnceMemo[int] = OnceMemo()
    calls = []
    start = threading.Barrier(8)

    def compute():
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to ask while it runs
        return 42

    def ask(out, i):
        start.wait()
        out[i] = memo.get("k", compute)

    out = [None] * 8
    threads = [threading.Thread(target=ask, args=(out, i)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [42] * 8 and len(calls) == 1 and len(memo) == 1


def test_a_rejected_or_raising_computation_is_not_kept():
    memo: OnceMemo[str] = OnceMemo()
    assert memo.get("k", lambda: "failed", keep=lambda v: v != "failed") == "failed"
    assert len(memo) == 0
    with pytest.raises(RuntimeError):
        memo.get("k", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert memo.get("k", lambda: "ok") == "ok" and memo.get("k", lambda: "other") == "ok"
