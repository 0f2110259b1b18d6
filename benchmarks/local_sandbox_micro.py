"""Micro-benchmark of the local sandbox backend, next to the raw floor measured in the same run.

    python benchmarks/local_sandbox_micro.py [--runs 50] [--json out.json]

Prints p50 milliseconds of create, exec, snapshot, fork + first exec, close, and the floor: one
shell-loop cycle of "mount a fresh overlay upper over a 200-file snapshot dir, run one command under
`bwrap --unshare-all` with the merged dir at /app, unmount, delete" (no cgroups, no Python). The ratio
fork_first_exec / floor is what to compare across machines; absolute numbers move with load.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time

from pivot_envs.sandbox.local import LocalBackend

FLOOR_SCRIPT = r"""
set -e
cd "$1"; n="$2"
mkdir -p snap/app
for i in $(seq 200); do echo "line $i" > snap/app/f$i.txt; done
start=$(date +%s%N)
for i in $(seq "$n"); do
  mkdir -p c/u c/w c/m
  mount -t overlay overlay -o lowerdir=snap,upperdir=c/u,workdir=c/w c/m
  bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
        --symlink usr/lib64 /lib64 --ro-bind /etc /etc --proc /proc --dev /dev --bind c/m/app /app \
        --chdir /app bash -c 'cat f1.txt' > /dev/null
  umount c/m
  rm -rf c
done
end=$(date +%s%N)
echo $(( (end - start) / n / 1000 ))
"""


def benchmark(n: int = 50, backend: LocalBackend | None = None) -> dict[str, float]:
    """p50 latency in milliseconds of create, exec, snapshot, fork+first exec and close (n runs each).

    A fork is measured as a warm reset is used: fork an existing snapshot, run one command.
    """
    own = backend is None
    be = backend or LocalBackend()
    times: dict[str, list[float]] = {k: [] for k in ("create", "exec", "snapshot", "fork_first_exec", "close")}
    try:
        with be.create() as base:
            base.exec("mkdir -p src && for i in $(seq 200); do echo line $i > src/f$i.txt; done")
            snap = base.snapshot()
            for _ in range(n):
                t0 = time.perf_counter()
                sb = be.create()
                t1 = time.perf_counter()
                sb.exec("echo hi > a.txt")
                t2 = time.perf_counter()
                s = sb.snapshot()
                t3 = time.perf_counter()
                sb.close()
                t4 = time.perf_counter()
                be.release(s)
                f = be.fork(snap)
                t5 = time.perf_counter()
                f.exec("cat src/f1.txt")
                t6 = time.perf_counter()
                f.close()
                times["create"].append(t1 - t0)
                times["exec"].append(t2 - t1)
                times["snapshot"].append(t3 - t2)
                times["close"].append(t4 - t3)
                times["fork_first_exec"].append(t6 - t5)
            be.release(snap)
    finally:
        if own:
            be.close()
    return {k: round(statistics.median(v) * 1000, 2) for k, v in times.items()}


def floor_ms(runs: int) -> float:
    """Mean ms of one raw mount + bwrap + umount cycle from a shell loop."""
    with tempfile.TemporaryDirectory(prefix="pivotrl-floor-") as d:
        out = subprocess.run(["bash", "-c", FLOOR_SCRIPT, "floor", d, str(runs)], check=True,
                             capture_output=True, text=True).stdout
    return int(out.strip()) / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    be = LocalBackend()
    try:
        t0 = time.perf_counter()
        floor_before = floor_ms(args.runs)
        p50 = benchmark(args.runs, be)
        floor_after = floor_ms(args.runs)
        wall = time.perf_counter() - t0
    finally:
        be.close()
    floor = (floor_before + floor_after) / 2
    result = {"runs": args.runs, "p50_ms": p50, "floor_ms": round(floor, 2),
              "fork_first_exec_over_floor": round(p50["fork_first_exec"] / floor, 2),
              "load_avg_1min": os.getloadavg()[0], "wall_s": round(wall, 1)}
    for k, v in p50.items():
        print(f"{k:>16}: {v:7.2f} ms (p50 of {args.runs})")
    print(f"{'floor':>16}: {floor:7.2f} ms (mean; shell mount+bwrap+umount)")
    print(f"fork+first exec / floor = {result['fork_first_exec_over_floor']}, load avg {result['load_avg_1min']:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
