"""Pivot profiling on the Ray verifier pool: throughput with 1 vs 2 actors, and what a killed actor costs.

    python benchmarks/ray_profile.py                      # 6 short terminal trajectories, local sandbox
    python benchmarks/ray_profile.py --trajectories 10 --repeats 2 --address auto   # on a running cluster

Workload (verification-bound on purpose): PivotTerminal-v0 in the local (bubblewrap) sandbox, every
state of the chosen trajectories, and a FIXED set of 4 actions per state
(`FixedActions.demonstration_variants`: the demonstration, `ls -la`, the demonstration's command
plus extra output, a bare "Done." message). Every one of them is judged by executing it in the
sandbox, so sampling is not the bottleneck and the numbers measure the pool. Each run starts fresh
actors (cold snapshot and verdict caches, so replaying the states is part of the work, as in a real
profiling run); the timing excludes actor start-up.

Runs alternate 1 actor / 2 actors (`--repeats` pairs) and the ratio is per pair, so a change of the
machine's load hits both sides of a pair; the load average is printed with every row. The killed-actor
run repeats the 2-actor run and kills actor 0 halfway through (by the clean run's time); its file is
compared with the clean run's: states missing, samples masked, and samples whose reward differs
(an infra failure scored 0 would show up there).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import table, write_json
from pivot_algo.distributed import FixedActions, VerifierPool, profile_with_pool
from pivot_algo.profiler import ProfileConfig, read_profile
from pivot_algo.rollout import StartState

ENV_ID = "PivotTerminal-v0"


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run(num_actors: int, states: list[StartState], trajs, out: Path, *, kill_after_s: float | None = None) -> dict:
    pool = VerifierPool(ENV_ID, {"sandbox": "local"}, num_actors=num_actors, num_cpus_per_actor=1.0)
    killer = None
    try:
        if kill_after_s is not None:
            killer = threading.Timer(kill_after_s, pool.kill_actor, args=(0,))
            killer.start()
        load_before = load()
        t0 = time.perf_counter()
        report = profile_with_pool(pool, states, ProfileConfig(k=4), out,
                                   actions=FixedActions.demonstration_variants(trajs))
        seconds = time.perf_counter() - t0
        stats = pool.stats
    finally:
        if killer is not None:
            killer.cancel()
        pool.close()
    samples = report.samples
    return {"actors": num_actors, "states": report.candidate_states, "samples": samples, "seconds": seconds,
            "verdicts_per_s": samples / seconds, "states_per_s": report.candidate_states / seconds,
            "masked": report.masked_samples, "load_before": load_before, "load_after": load(),
            "retried_samples": stats.retried_samples, "recovered_samples": stats.recovered_samples,
            "actor_deaths": stats.actor_deaths, "actors_replaced": stats.actors_replaced}


def compare(clean: Path, other: Path) -> dict:
    a = {(p.trajectory_id, p.turn): p for p in read_profile(clean)}
    b = {(p.trajectory_id, p.turn): p for p in read_profile(other)}
    missing = sorted(set(a) - set(b))
    differing = sum(1 for k in set(a) & set(b) for x, y in zip(a[k].rewards, b[k].rewards) if x != y)
    expected = {k: len(p.rewards) + p.masked for k, p in a.items()}
    lost = sum(n - (len(b[k].rewards) + b[k].masked if k in b else 0) for k, n in expected.items())
    return {"states_missing": len(missing), "samples_masked": sum(p.masked for p in b.values()),
            "samples_with_a_different_reward": differing, "samples_lost": lost,
            "infra_scored_zero": sum(1 for k in set(a) & set(b) for x, y in zip(a[k].rewards, b[k].rewards)
                                     if x == 1.0 and y == 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trajectories", type=int, default=6, help="short (3-5 turn) trajectories of the train split")
    ap.add_argument("--repeats", type=int, default=1, help="(1 actor, 2 actors) pairs")
    ap.add_argument("--address", default=None, help="Ray address (default: start a local instance, 2 CPUs)")
    ap.add_argument("--no-kill", action="store_true", help="skip the killed-actor run")
    args = ap.parse_args()

    import ray

    if args.address:
        ray.init(address=args.address, log_to_driver=False)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    import gymnasium as gym

    import pivot_envs  # noqa: F401  (registers the envs)
    from pivot_envs.base_env import pivot_env

    probe = gym.make(ENV_ID, sandbox="local")
    trajs = [t for t in pivot_env(probe).trajectories if 3 <= t.num_turns <= 5][: args.trajectories]
    probe.close()
    states = [StartState(t.id, k) for t in trajs for k in range(t.num_turns)]
    print(f"workload: {len(trajs)} trajectories, {len(states)} states x 4 fixed actions, local sandbox; "
          f"cpus={os.cpu_count()} load={load()}")

    tmp = Path(tempfile.mkdtemp(prefix="ray-profile-"))
    rows, pairs = [], []
    for rep in range(args.repeats):
        one = run(1, states, trajs, tmp / f"one_{rep}.jsonl")
        two = run(2, states, trajs, tmp / f"two_{rep}.jsonl")
        rows += [one, two]
        pairs.append(one["seconds"] / two["seconds"])
        agree = compare(tmp / f"one_{rep}.jsonl", tmp / f"two_{rep}.jsonl")
        print(f"pair {rep}: speed-up {pairs[-1]:.2f}x  (1 actor {one['seconds']:.1f} s, 2 actors {two['seconds']:.1f} s; "
              f"loads {one['load_before']} / {two['load_before']}); 1-vs-2 verdicts differing: "
              f"{agree['samples_with_a_different_reward']}")
    killed = None
    if not args.no_kill:
        clean = rows[-1]
        killed = run(2, states, trajs, tmp / "killed.jsonl", kill_after_s=clean["seconds"] / 2)
        killed.update(compare(tmp / f"two_{args.repeats - 1}.jsonl", tmp / "killed.jsonl"))
        killed["extra_seconds"] = killed["seconds"] - clean["seconds"]
        rows.append(killed)

    headers = ["actors", "states", "samples", "seconds", "verdicts/s", "masked", "retried", "deaths", "load before"]
    print(table(headers, [[r["actors"] if "extra_seconds" not in r else "2 (actor 0 killed)", r["states"], r["samples"],
                           f"{r['seconds']:.1f}", f"{r['verdicts_per_s']:.2f}", r["masked"], r["retried_samples"],
                           r["actor_deaths"], r["load_before"]] for r in rows]))
    print(f"speed-up 1 -> 2 actors: {', '.join(f'{p:.2f}x' for p in pairs)} (goal >= 1.8x; {os.cpu_count()} cores "
          "shared with other work: see the load column)")
    if killed is not None:
        print(f"killed actor: {killed['actor_deaths']} death(s), {killed['retried_samples']} samples re-sent, "
              f"{killed['samples_lost']} verdicts lost, {killed['infra_scored_zero']} scored 0 for infra reasons, "
              f"{killed['samples_masked']} masked, {killed['extra_seconds']:+.1f} s vs the clean 2-actor run")
    path = write_json("ray_profile", {"workload": {"env": ENV_ID, "sandbox": "local", "trajectories": len(trajs),
                                                   "states": len(states), "actions_per_state": 4,
                                                   "actions": "FixedActions.demonstration_variants"},
                                      "runs": rows, "speedups": pairs, "killed": killed})
    print(f"wrote {path}")
    ray.shutdown()


if __name__ == "__main__":
    main()
