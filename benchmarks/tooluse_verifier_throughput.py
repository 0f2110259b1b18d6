"""Tool-use verifier throughput and reset latency (PivotToolUse-v0 on the converted BFCL suite).

Prints, side by side in one run: canonical verdicts/s (goal >= 5,000/s), execution verdicts/s, message
verdicts/s with the content rule vs the paper's "any message" (the cost of issue 8's fix), and
reset latency at k = 0, mid, last, cold (snapshot cache cleared) and warm (p50 / p95). Writes
benchmarks/results/tooluse.json.

    .venv/bin/python benchmarks/tooluse_verifier_throughput.py [--trajectories 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

from pivot_envs.domains.tooluse import bfcl
from pivot_envs.domains.tooluse.env import SnapshotCache, ToolUseEnv
from pivot_envs.domains.tooluse.verifier import CanonicalVerifier, ExecutionVerifier
from pivot_envs.parsing import parse_action


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def variants(ref: dict) -> list:
    """The reference, a reordered/coerced copy, and a wrong copy (changed first string argument)."""
    out = [parse_action(ref)]
    calls = ref["tool_calls"]
    args = json.loads(calls[0]["function"]["arguments"])
    out.append(parse_action({"role": "assistant", "tool_calls": [{"function": {
        "name": calls[0]["function"]["name"], "arguments": json.dumps(dict(reversed(list(args.items()))))}}]}))
    wrong = {k: (v + "_x" if isinstance(v, str) else v) for k, v in args.items()}
    out.append(parse_action({"role": "assistant", "tool_calls": [{"function": {
        "name": calls[0]["function"]["name"], "arguments": json.dumps(wrong)}}]}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=20, help="trajectories (half base, half long_context)")
    ap.add_argument("--canonical-verdicts", type=int, default=30000)
    ap.add_argument("--execution-verdicts", type=int, default=300)
    ap.add_argument("--message-verdicts", type=int, default=6000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "tooluse.json"))
    a = ap.parse_args()

    n = a.trajectories // 2
    trajs = bfcl.load_suite(["base"], limit=n) + bfcl.load_suite(["long_context"], limit=n)
    cache = SnapshotCache()
    env = ToolUseEnv(trajectories=trajs, snapshot_cache=cache)
    rng = random.Random(0)
    try:
        # ---- reset latency: cold (cache cleared before each) and warm, at k = 0, mid, last
        reset = {}
        for label, pick in (("k0", lambda t: 0), ("mid", lambda t: t.num_turns // 2), ("last", lambda t: t.num_turns - 1)):
            cold, warm = [], []
            for t in trajs:
                k = pick(t)
                cache.clear()
                t0 = time.perf_counter(); env.reset(options={"trajectory": t.id, "turn": k}); cold.append(time.perf_counter() - t0)
                for _ in range(5):
                    t0 = time.perf_counter(); env.reset(options={"trajectory": t.id, "turn": k}); warm.append(time.perf_counter() - t0)
            reset[label] = {"cold_p50_ms": 1e3 * pct(cold, .5), "cold_p95_ms": 1e3 * pct(cold, .95),
                            "warm_p50_ms": 1e3 * pct(warm, .5), "warm_p95_ms": 1e3 * pct(warm, .95)}

        # ---- states and actions for the verdict benchmarks (tool-call turns only)
        cases = []
        for t in trajs:
            for k in range(t.num_turns):
                ref = t.reference(k)
                if ref.get("tool_calls"):
                    cases.append((env.load_state(t, k), ref, variants(ref)))
        canonical, execution = CanonicalVerifier(), ExecutionVerifier()

        picks = [rng.randrange(len(cases)) for _ in range(a.canonical_verdicts)]
        t0 = time.perf_counter()
        correct = 0
        for i, p in enumerate(picks):
            state, ref, acts = cases[p]
            correct += canonical.judge(state, acts[i % 3], ref).equivalent
        can_s = time.perf_counter() - t0

        picks = [rng.randrange(len(cases)) for _ in range(a.execution_verdicts)]
        t0 = time.perf_counter()
        for i, p in enumerate(picks):
            state, ref, acts = cases[p]
            execution.judge(state, acts[i % 3], ref)
        exe_s = time.perf_counter() - t0

        # ---- message turns: the content rule (messages.py) vs the paper's "any message", interleaved
        msg_cases = []
        for t in trajs:
            for k_str in t.task["message_turns"]:
                k = int(k_str)
                ref = t.reference(k)
                acts = [parse_action(ref), parse_action("ok"), parse_action("Done. The result was 42 and file_x.txt.")]
                msg_cases.append((env.load_state(t, k), ref, acts))
        content, any_message = CanonicalVerifier("content"), CanonicalVerifier("any")
        msg_time = {"content": 0.0, "any": 0.0}
        picks = [rng.randrange(len(msg_cases)) for _ in range(a.message_verdicts)]
        for start in range(0, len(picks), 500):  # alternate blocks so that load changes hit both alike
            for name, verifier in (("content", content), ("any", any_message)):
                t0 = time.perf_counter()
                for i, p in enumerate(picks[start:start + 500]):
                    state, ref, acts = msg_cases[p]
                    verifier.judge(state, acts[i % 3], ref)
                msg_time[name] += time.perf_counter() - t0

        result = {
            "machine": platform.processor() or platform.machine(), "bfcl_eval": bfcl.package_version(),
            "trajectories": len(trajs), "tool_call_states": len(cases),
            "canonical_verdicts_per_s": a.canonical_verdicts / can_s,
            "canonical_equivalent_fraction": correct / a.canonical_verdicts,
            "execution_verdicts_per_s": a.execution_verdicts / exe_s,
            "execution_ms_per_verdict": 1e3 * exe_s / a.execution_verdicts,
            "message_states": len(msg_cases),
            "message_content_verdicts_per_s": a.message_verdicts / msg_time["content"],
            "message_any_verdicts_per_s": a.message_verdicts / msg_time["any"],
            "reset_latency": reset, "snapshot_cache_entries": len(cache),
            "load_average_after": os.getloadavg(),
        }
    finally:
        env.close()

    print(f"tool-use verifier throughput ({len(trajs)} BFCL trajectories, {len(cases)} tool-call states)")
    print(f"  canonical : {result['canonical_verdicts_per_s']:>10,.0f} verdicts/s  (goal >= 5,000/s)")
    print(f"  execution : {result['execution_verdicts_per_s']:>10,.0f} verdicts/s  ({result['execution_ms_per_verdict']:.2f} ms each)")
    print(f"  messages  : {result['message_content_verdicts_per_s']:>10,.0f} verdicts/s with the content rule vs "
          f"{result['message_any_verdicts_per_s']:,.0f}/s for 'any message' ({len(msg_cases)} message states)")
    print(f"  load average: {os.getloadavg()}")
    print("  reset latency (ms)      cold p50   cold p95   warm p50   warm p95")
    for label, r in reset.items():
        print(f"    {label:<20} {r['cold_p50_ms']:>9.2f}  {r['cold_p95_ms']:>9.2f}  {r['warm_p50_ms']:>9.3f}  {r['warm_p95_ms']:>9.3f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
