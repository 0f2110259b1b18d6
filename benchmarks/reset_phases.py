"""Where a warm episode reset's time goes, per phase, on each sandbox backend.

    python benchmarks/reset_phases.py [--backends local docker] [--n 60]

A warm episode reset = close the previous sandbox, fork the state's snapshot, run the first command
(what `reset(turn=k)` costs an agent loop once the snapshot exists). Each phase is timed by wrapping
the backend's own functions (no change to them): local: quota volume, overlay mount, cgroup, bwrap
argv, the exec (bwrap + seccomp start + command + teardown), and at close the cgroup removal, the
unmount and the layer/volume bookkeeping; docker: the pool take, a synchronous container start (a pool
miss), the exec (its three daemon calls: create, start with the output, inspect for the exit code) and the
container removal, plus the exec wrapper's share (`true` with and without it, alternating). Prints p50/p90 ms per phase next to the whole cycle, and
the load average before and after (the numbers move with it).
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/reset_phases.py` from anywhere

from benchmarks._common import pct, table, write_json
from pivot_envs.sandbox import make_backend
from pivot_envs.sandbox.ready_pool import ReadyPool

_current: collections.Counter[str] = collections.Counter()


def _wrap(owner: object, attr: str, phase: str) -> Callable[[], None]:
    """Time every call of `owner.attr` made by the measuring thread into `phase` (the pools' own
    threads work off the reset's path); returns the undo."""
    original = getattr(owner, attr)
    measuring = threading.get_ident()

    @functools.wraps(original)
    def timed(*args, **kwargs):
        if threading.get_ident() != measuring:
            return original(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _current[phase] += time.perf_counter() - t0

    setattr(owner, attr, timed)
    return lambda: setattr(owner, attr, original)


def _hooks(name: str) -> list[tuple[object, str, str]]:
    if name == "local":
        from pivot_envs.sandbox.local import backend, cgroups, pool, sandbox

        return [(ReadyPool, "take", "fork: pool take"),
                (pool.VolumePool, "take", "fork: quota volume"),
                (sandbox, "mount_overlay", "fork: overlay mount"),
                (cgroups.Cgroups, "create", "fork: cgroup"),
                (sandbox.LocalSandbox, "_build_argv", "fork: bwrap argv"),
                (sandbox.LocalSandbox, "exec", "exec: bwrap+seccomp+command"),
                (cgroups.Cgroups, "remove", "close: cgroup removal"),
                (sandbox, "unmount", "close: unmount"),
                (backend.LocalBackend, "_forget", "close: layer/volume bookkeeping")]
    if name == "docker":
        from docker.api.client import APIClient

        from pivot_envs.sandbox.docker import sandbox as docker_sandbox
        from pivot_envs.sandbox.docker.backend import DockerBackend
        return [(ReadyPool, "take", "fork: pool take"),
                (DockerBackend, "_start", "fork: container create+start (pool miss)"),
                (docker_sandbox.DockerSandbox, "exec", "exec: docker exec"),
                (APIClient, "exec_create", "exec: 1 exec_create (HTTP)"),
                (docker_sandbox, "_exec_output", "exec: 2 exec start + output (runc exec, wrapper, command)"),
                (APIClient, "exec_inspect", "exec: 3 exec_inspect (HTTP, exit code)"),
                (DockerBackend, "_remove_now", "close: container removal")]
    return []


def measure(name: str, n: int) -> dict:
    undo = [_wrap(*hook) for hook in _hooks(name)]
    be = make_backend(name)
    cycles: dict[str, list[float]] = collections.defaultdict(list)
    try:
        with be.create() as seed:
            seed.exec("mkdir -p src && for i in $(seq 200); do echo line $i > src/f$i.txt; done")
            snap = seed.snapshot()
        be.warm(snap)  # as an env does at an episode reset (the local fork pool serves warmed snapshots only)
        box = be.fork(snap)
        box.exec("true")
        for i in range(n + 5):  # the first 5 warm the pools
            _current.clear()
            t0 = time.perf_counter()
            box.close()
            t1 = time.perf_counter()
            box = be.fork(snap)
            t2 = time.perf_counter()
            box.exec("true")
            t3 = time.perf_counter()
            if i >= 5:
                cycles["close (whole)"].append(t1 - t0)
                cycles["fork (whole)"].append(t2 - t1)
                cycles["first exec (whole)"].append(t3 - t2)
                cycles["warm episode reset"].append(t3 - t0)
                for phase, s in _current.items():
                    cycles[phase].append(s)
        if name == "docker":  # the exec wrapper's share: the same `true` with and without it, alternating
            for i in range(n):
                t0 = time.perf_counter()
                box.exec("true")
                t1 = time.perf_counter()
                box._run(["true"])  # type: ignore[attr-defined]
                t2 = time.perf_counter()
                cycles["exec `true` through the wrapper (A/B)"].append(t1 - t0)
                cycles["exec `true` without the wrapper (A/B)"].append(t2 - t1)
        box.close()
        be.release(snap)
        stats = getattr(be, "stats", {})  # both backends count their fork pool's hits and misses
        print(f"{name}: fork pool hits {stats.get('pool_hits', 0)}, misses {stats.get('pool_misses', 0)} "
              f"(the first 5 forks included)", flush=True)
    finally:
        be.close()
        for u in undo:
            u()
    return {phase: {"p50_ms": round(pct(v, 50) * 1000, 2), "p90_ms": round(pct(v, 90) * 1000, 2), "n": len(v)}
            for phase, v in cycles.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["local", "docker"])
    ap.add_argument("--n", type=int, default=60)
    args = ap.parse_args()
    load_before = os.getloadavg()
    results = {name: measure(name, args.n) for name in args.backends}
    load_after = os.getloadavg()
    rows = [[name, phase, f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", r["n"]]
            for name, phases in results.items() for phase, r in phases.items()]
    print(table(["backend", "phase", "p50 ms", "p90 ms", "n"], rows))
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}; cpus {os.cpu_count()}")
    print(f"wrote {write_json('reset_phases', {'n': args.n, 'load_before': load_before, 'load_after': load_after, 'phases': results})}")


if __name__ == "__main__":
    main()
