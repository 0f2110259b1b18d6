"""Warm-reset benchmark of the docker sandbox backend.

    python -m sandboxes.bench_docker [--n 30] [--pool-size 2] [--json out.json]

A warm reset = fork a cached snapshot into a sandbox that has answered one `exec`. The loop is the
one an env runs: fork, exec, close, repeat. Prints p50/p90 of fork alone and of fork+first exec,
the pool hit rate, and the same loop with the pool disabled, side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def measure(pool_size: int, n: int, pause_s: float) -> dict:
    from pivot_envs.sandbox.docker import DockerBackend

    backend = DockerBackend(pool_size=pool_size)
    try:
        seed = backend.create()
        seed.exec("for i in $(seq 200); do echo $i > f$i.txt; done")
        snap = seed.snapshot("bench")
        seed.close()
        fork_ms, ready_ms, close_ms = [], [], []
        for _ in range(n):
            t0 = time.perf_counter()
            box = backend.fork(snap)
            t1 = time.perf_counter()
            result = box.exec("cat f7.txt")
            t2 = time.perf_counter()
            assert result.stdout == "7\n", result
            box.close()
            t3 = time.perf_counter()
            fork_ms.append((t1 - t0) * 1000)
            ready_ms.append((t2 - t0) * 1000)
            close_ms.append((t3 - t2) * 1000)
            time.sleep(pause_s)  # stands in for the policy's sampling time between resets
        stats = dict(backend.stats)
        hits, misses = stats.get("pool_hits", 0), stats.get("pool_misses", 0)
        return {
            "pool_size": pool_size, "n": n, "pause_s": pause_s,
            "fork_p50_ms": statistics.median(fork_ms), "fork_p90_ms": _percentile(fork_ms, 0.9),
            "fork_exec_p50_ms": statistics.median(ready_ms),
            "fork_exec_p90_ms": _percentile(ready_ms, 0.9),
            "close_p50_ms": statistics.median(close_ms),
            # the first fork of the snapshot is a miss by construction; count the loop's forks
            "pool_hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        }
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between resets")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = [measure(args.pool_size, args.n, args.pause), measure(0, args.n, args.pause)]
    keys = ["pool_size", "fork_p50_ms", "fork_p90_ms", "fork_exec_p50_ms", "fork_exec_p90_ms",
            "close_p50_ms", "pool_hit_rate"]
    print(" | ".join(f"{k:>16}" for k in keys))
    for row in rows:
        print(" | ".join(f"{row[k]:>16.3g}" if isinstance(row[k], float) else f"{row[k]:>16}"
                         for k in keys))
    base, pooled = rows[1]["fork_exec_p50_ms"], rows[0]["fork_exec_p50_ms"]
    print(f"warm reset p50 (fork+exec): {pooled:.0f} ms pooled vs {base:.0f} ms unpooled "
          f"({base / pooled:.1f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
