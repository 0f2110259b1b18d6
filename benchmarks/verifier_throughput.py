"""Terminal verifier throughput: verdicts per second per sandbox backend, cold (every verdict runs
both commands in forks; snapshots already built) and with the verdict cache (same actions again),
side by side.

    python benchmarks/verifier_throughput.py --backends local docker --states 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym
from _common import table, write_json

import pivot_envs  # noqa: F401
from pivot_envs.parsing import render_bash_call
from pivot_envs.trajectory import load_trajectories, tool_calls_of


def actions_for(reference: dict) -> list[str]:
    call = render_bash_call
    calls = tool_calls_of(reference)
    if not calls:
        return ["Done.", call("ls")]
    cmd = calls[0].arguments["command"]
    return [call(cmd), call(cmd + " ; true"), call("ls -a"), call("echo nope > /dev/null")]


def bench(backend: str, n_states: int) -> dict:
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    trajs = load_trajectories(builtin_trajectories("train"))
    states = [(t.id, k) for t in trajs for k in range(t.num_turns)][:n_states]
    env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=backend)
    try:
        for tid, k in states:  # build snapshots first: this benchmark is about verdicts, not replay
            env.reset(options={"trajectory": tid, "turn": k})
        result = {}
        for phase in ("cold", "cached"):
            n, t0 = 0, time.perf_counter()
            for tid, k in states:
                _, info = env.reset(options={"trajectory": tid, "turn": k})
                n += len(env.unwrapped.judge_actions(actions_for(info["reference"])))
            dt = time.perf_counter() - t0
            result[phase] = {"verdicts": n, "seconds": dt, "per_second": n / dt}
        result["cache_hits"] = env.unwrapped.verdict_cache.hits
        return result
    finally:
        env.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["local", "docker"])
    ap.add_argument("--states", type=int, default=10)
    args = ap.parse_args()
    results = {b: bench(b, args.states) for b in args.backends}
    rows = [[b, r["cold"]["verdicts"], f"{r['cold']['per_second']:.1f}", f"{r['cached']['per_second']:.0f}",
             f"{r['cached']['per_second'] / r['cold']['per_second']:.0f}x"] for b, r in results.items()]
    print(table(["backend", "verdicts", "cold verdicts/s", "cached verdicts/s", "cache speed-up"], rows))
    print(f"\nwrote {write_json('verifier_throughput', results)}")


if __name__ == "__main__":
    main()
