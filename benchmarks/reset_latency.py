"""Reset latency per env and sandbox backend, at turn k = 0, mid and last, cold and warm.

- cold: the snapshot cache is empty; reset(k) replays the demonstration's actions 0..k-1.
- warm: the snapshots exist; reset(k) is a cache lookup plus, in episode mode, a fork.
Two reset kinds are timed: "pivot" (state ready to judge: what profiling and training use) and
"episode" (a live sandbox forked and answering its first command: what an agent loop needs).
The ratio last/0 says whether a reset costs the same whatever k is.

    python benchmarks/reset_latency.py --backends local docker --trajectories 5 --reps 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym  # noqa: E402

import pivot_envs  # noqa: E402,F401
from pivot_envs.trajectory import load_trajectories  # noqa: E402
from _common import ms, pct, table, write_json  # noqa: E402


def time_resets(env, trajs, k_of, reps: int, cold: bool, first_exec: bool) -> list[float]:
    out = []
    for rep in range(reps if not cold else 1):
        for t in trajs:
            if cold:
                env.unwrapped.snapshots.clear()
            k = k_of(t)
            t0 = time.perf_counter()
            env.reset(options={"trajectory": t.id, "turn": k})
            if first_exec:
                env.unwrapped._state.sandbox.exec("true")
            out.append(time.perf_counter() - t0)
    return out


def bench_terminal(backend: str, n_traj: int, reps: int) -> list[dict]:
    rows = []
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    trajs = [t for t in load_trajectories(builtin_trajectories("train"))][:n_traj]
    ks = {"0": lambda t: 0, "mid": lambda t: t.num_turns // 2, "last": lambda t: t.num_turns - 1}
    for mode in ("pivot", "episode"):
        env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=backend, mode=mode)
        try:
            for label, k_of in ks.items():
                cold = time_resets(env, trajs, k_of, reps, cold=True, first_exec=mode == "episode")
                time_resets(env, trajs, k_of, 1, cold=False, first_exec=False)  # make sure all are cached
                warm = time_resets(env, trajs, k_of, reps, cold=False, first_exec=mode == "episode")
                rows.append({"env": "PivotTerminal-v0", "backend": backend, "reset": mode, "k": label,
                             "cold_p50": pct(cold, 50), "cold_p95": pct(cold, 95),
                             "warm_p50": pct(warm, 50), "warm_p95": pct(warm, 95), "n_warm": len(warm)})
            stats = getattr(env.unwrapped.backend, "stats", None)
            if stats:
                rows[-1]["backend_stats"] = dict(stats)
        finally:
            env.close()
    return rows


def bench_tooluse(n_traj: int, reps: int) -> list[dict]:
    rows = []
    env = gym.make("PivotToolUse-v0")
    trajs = env.unwrapped.trajectories[:n_traj]
    ks = {"0": lambda t: 0, "mid": lambda t: t.num_turns // 2, "last": lambda t: t.num_turns - 1}
    try:
        for label, k_of in ks.items():
            clear = getattr(env.unwrapped, "clear_cache", None)
            cold = []
            for t in trajs:
                if clear:
                    clear()
                t0 = time.perf_counter()
                env.reset(options={"trajectory": t.id, "turn": k_of(t)})
                cold.append(time.perf_counter() - t0)
            warm = time_resets(env, trajs, k_of, reps, cold=False, first_exec=False)
            rows.append({"env": "PivotToolUse-v0", "backend": "worker", "reset": "pivot", "k": label,
                         "cold_p50": pct(cold, 50), "cold_p95": pct(cold, 95),
                         "warm_p50": pct(warm, 50), "warm_p95": pct(warm, 95), "n_warm": len(warm)})
    finally:
        env.close()
    return rows


def ratio(last: float, first: float) -> str:
    """last/0, or a note when both are below a millisecond (a cache lookup: the ratio is noise)."""
    if max(last, first) < 1e-3:
        return "n/a (<1 ms)"
    return f"{last / first:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["local", "docker"])
    ap.add_argument("--trajectories", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-tooluse", action="store_true")
    args = ap.parse_args()
    rows = []
    for b in args.backends:
        rows += bench_terminal(b, args.trajectories, args.reps)
    if not args.no_tooluse:
        try:
            rows += bench_tooluse(args.trajectories, args.reps)
        except Exception as e:  # the tool-use env is optional here
            print(f"(tool-use env skipped: {type(e).__name__}: {e})")
    out = [[r["env"], r["backend"], r["reset"], r["k"], ms(r["cold_p50"]), ms(r["cold_p95"]), ms(r["warm_p50"]),
            ms(r["warm_p95"])] for r in rows]
    print(table(["env", "backend", "reset", "k", "cold p50 ms", "cold p95 ms", "warm p50 ms", "warm p95 ms"], out))
    print()
    ratio_rows = []
    for (env_id, b, mode) in sorted({(r["env"], r["backend"], r["reset"]) for r in rows}):
        by_k = {r["k"]: r for r in rows if (r["env"], r["backend"], r["reset"]) == (env_id, b, mode)}
        ratio_rows.append([env_id, b, mode, ratio(by_k["last"]["warm_p50"], by_k["0"]["warm_p50"]),
                           ratio(by_k["last"]["cold_p50"], by_k["0"]["cold_p50"])])
    print(table(["env", "backend", "reset", "warm last/0", "cold last/0"], ratio_rows))
    print(f"\nwrote {write_json('reset_latency', {'rows': rows, 'ratios': ratio_rows})}")


if __name__ == "__main__":
    main()
