"""Reset latency per env and sandbox backend, at turn k = 0, mid and last, cold and warm.

- cold: the snapshot cache is empty; reset(k) replays the demonstration's actions 0..k-1.
- warm: the snapshots exist; reset(k) is a cache lookup plus, in episode mode, a fork.
Two reset kinds are timed: "pivot" (state ready to judge: what profiling and training use) and
"episode" (a live sandbox forked and answering its first command: what an agent loop needs).
The ratio last/0 says whether a reset costs the same whatever k is.

    python benchmarks/reset_latency.py --backends local docker --trajectories 5 --reps 20

`--compare-before REV [REV ...] [--gap-ms G]` measures instead what the sandbox containment costs (issue 8: no capabilities,
seccomp, masked secrets, the per-sandbox disk-quota volume, synchronous docker removal): warm
episode resets (previous sandbox closed, fork, first command) at the middle turn, with the code of
git revision REV (exported with `git archive` into a temp dir) and with this checkout, alternating
rounds in one run so that machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gymnasium as gym

import pivot_envs  # noqa: F401
from benchmarks._common import ms, pct, table, write_json
from pivot_envs.base_env import pivot_env
from pivot_envs.sandboxed_env import SandboxedEnv
from pivot_envs.trajectory import load_trajectories


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
    rows: list[dict[str, Any]] = []
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
            core = env.unwrapped
            stats = getattr(core.backend, "stats", None) if isinstance(core, SandboxedEnv) else None
            if stats:
                rows[-1]["backend_stats"] = dict(stats)
        finally:
            env.close()
    return rows


def bench_tooluse(n_traj: int, reps: int) -> list[dict]:
    rows = []
    env = gym.make("PivotToolUse-v0")
    trajs = pivot_env(env).trajectories[:n_traj]
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


def bench_swe(n_traj: int, reps: int) -> list[dict]:
    """PivotSWE-v0 (docker, opt-in: --swe): pivot resets cold and warm at k = 0 / mid / last, and warm
    episode resets (a live fork answering its first command) from the same, shared snapshot cache."""
    from os import getloadavg

    from pivot_envs.domains.swe.expert import builtin_trajectories as swe_trajectories

    trajs = load_trajectories(swe_trajectories("train"))[:n_traj]
    ks = {"0": lambda t: 0, "mid": lambda t: t.num_turns // 2, "last": lambda t: t.num_turns - 1}
    rows = []
    for mode in ("pivot", "episode"):
        env = gym.make("PivotSWE-v0", trajectories=trajs, sandbox="docker", mode=mode)
        try:
            for label, k_of in ks.items():
                cold = time_resets(env, trajs, k_of, 1, cold=True, first_exec=False) if mode == "pivot" else []
                time_resets(env, trajs, k_of, 1, cold=False, first_exec=False)  # every trajectory cached
                warm = time_resets(env, trajs, k_of, reps, cold=False, first_exec=mode == "episode")
                rows.append({"env": "PivotSWE-v0", "backend": "docker", "reset": mode, "k": label,
                             "cold_p50": pct(cold, 50), "cold_p95": pct(cold, 95), "warm_p50": pct(warm, 50),
                             "warm_p95": pct(warm, 95), "n_warm": len(warm), "load": getloadavg()})
        finally:
            env.close()
    return rows


_CONTAINMENT_PROBE = r"""
import json, sys, time
import gymnasium as gym
import pivot_envs
from pivot_envs.domains.terminal.tasks import builtin_trajectories
from pivot_envs.trajectory import load_trajectories
backend, n_traj, reps, kind, gap_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
trajs = list(load_trajectories(builtin_trajectories("train")))[:n_traj]
env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=backend, mode=kind)
# episode: the middle turn, then a first command; pivot: every turn (the state is ready to judge)
turns = [(t.id, t.num_turns // 2) for t in trajs] if kind == "episode" else [
    (t.id, k) for t in trajs for k in range(t.num_turns)]
times, cold = [], []
try:
    for tid, k in turns:  # fill the snapshot cache
        t0 = time.perf_counter()
        env.reset(options={"trajectory": tid, "turn": k})
        cold.append(time.perf_counter() - t0)
    for _ in range(reps):
        for tid, k in turns:
            t0 = time.perf_counter()
            env.reset(options={"trajectory": tid, "turn": k})
            if kind == "episode":
                env.unwrapped._state.sandbox.exec("true")
            times.append(time.perf_counter() - t0)
            time.sleep(gap_s)  # untimed: lets background work (removals, pool refills) drain before the next reset
finally:
    env.close()
print(json.dumps({"warm": times, "cold": cold}))
"""


def bench_containment_cost(revs: list[str], backends: list[str], n_traj: int, reps: int, rounds: int = 3,
                           kind: str = "episode", gap_s: float = 0.0) -> list[dict]:
    """Warm `kind` reset p50/p95 (episode: middle turn + first command; pivot: every turn, no fork)
    with the code of each of `revs` (oldest first: a row per change) and this checkout, alternating rounds;
    pivot rows also give the cold resets (the first one of each state, which builds it). `gap_s` > 0 pauses (untimed) after each reset: the
    latency of one reset on an idle machine, where 0 (back to back) also pays for the previous resets'
    background work."""
    repo = Path(__file__).resolve().parent.parent
    rows = []
    with tempfile.TemporaryDirectory(prefix="pivotrl-before-") as scratch:
        trees = {}
        for rev in revs:
            tree = os.path.join(scratch, rev)
            os.mkdir(tree)
            archive = subprocess.run(["git", "archive", rev], cwd=repo, capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
            trees[f"before ({rev})" if rev == revs[0] else f"at {rev}"] = tree
        trees["after (this checkout)"] = str(repo)
        for backend in backends:
            samples: dict[str, list[float]] = {name: [] for name in trees}
            colds: dict[str, list[float]] = {name: [] for name in trees}
            loads = []
            for _ in range(rounds):
                for name, tree in trees.items():
                    env = dict(os.environ, PYTHONPATH=tree)
                    loads.append(os.getloadavg()[0])
                    proc = subprocess.run([sys.executable, "-c", _CONTAINMENT_PROBE, backend, str(n_traj), str(reps),
                                           kind, str(gap_s)], cwd=tree, env=env, capture_output=True, text=True, check=False)
                    if proc.returncode != 0:
                        raise RuntimeError(f"{name} / {backend} failed: {proc.stderr[-2000:]}")
                    got = json.loads(proc.stdout.strip().splitlines()[-1])
                    samples[name] += got["warm"]
                    colds[name] += got["cold"]
            for name, times in samples.items():
                row = {"backend": backend, "code": name, "gap_s": gap_s, f"warm_{kind}_p50": pct(times, 50),
                       f"warm_{kind}_p95": pct(times, 95), "n": len(times), "load": os.getloadavg(),
                       "load_1min_range": [min(loads), max(loads)]}
                if kind == "pivot":
                    row.update(cold_pivot_p50=pct(colds[name], 50), cold_pivot_p95=pct(colds[name], 95))
                rows.append(row)
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
    ap.add_argument("--swe", action="store_true", help="also PivotSWE-v0 (docker; repository images are built when missing)")
    ap.add_argument("--compare-before", metavar="REV", nargs="+",
                    help="containment cost: REV's code vs this checkout; several REVs (oldest first): one row per change")
    ap.add_argument("--reset-kind", choices=("episode", "pivot"), default="episode",
                    help="with --compare-before: warm episode resets (default) or pivot resets of every turn")
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="with --compare-before: untimed pause after each reset (0: back to back)")
    args = ap.parse_args()
    if args.compare_before:
        kind = args.reset_kind
        rows = bench_containment_cost(args.compare_before, args.backends, args.trajectories, args.reps, kind=kind,
                                      gap_s=args.gap_ms / 1000)
        base = {r["backend"]: r for r in rows if r["code"].startswith("before")}
        cold = kind == "pivot"
        fine = (lambda x: f"{1000 * x:8.3f}") if cold else ms  # a warm pivot reset is a cache lookup (< 1 ms)
        print(table(["backend", "code", f"warm {kind} p50 ms", "p95 ms", "n", "p50 after/before",
                     *(["cold p50 ms", "cold p95 ms"] if cold else []), "load during (1 min)", "load (1/5/15 min)"],
                    [[r["backend"], r["code"], fine(r[f"warm_{kind}_p50"]), fine(r[f"warm_{kind}_p95"]), r["n"],
                      f"{r[f'warm_{kind}_p50'] / base[r['backend']][f'warm_{kind}_p50']:.2f}",
                      *([ms(r["cold_pivot_p50"]), ms(r["cold_pivot_p95"])] if cold else []),
                      "{:.1f}-{:.1f}".format(*r["load_1min_range"]),
                      " ".join(f"{x:.1f}" for x in r["load"])] for r in rows]))
        name = "containment_cost" if kind == "episode" else "pivot_reset_before_after"
        name += f"_gap{args.gap_ms:g}ms" if args.gap_ms else ""
        print(f"pause after each reset: {args.gap_ms:g} ms (untimed)")
        print(f"\nwrote {write_json(name, {'rev': args.compare_before[0], 'revs': args.compare_before, 'rows': rows})}")
        return
    rows = []
    for b in args.backends:
        rows += bench_terminal(b, args.trajectories, args.reps)
    if args.swe:
        rows += bench_swe(args.trajectories, args.reps)
    if not args.no_tooluse:
        try:
            rows += bench_tooluse(args.trajectories, args.reps)
        except Exception as e:  # noqa: BLE001 - the tool-use env is optional here
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
