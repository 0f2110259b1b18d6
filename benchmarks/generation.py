"""Generation benchmark: the profiling workload, sampled by each engine side by side in one run.

Workload (PivotRL's profiling phase): K samples x up to N new tokens at consecutive turns of real
terminal trajectories (built-in suite, train split; by default all 5 turns of 2 trajectories, 10
states), each state seeded from (trajectory, turn) as the profiler seeds it, the same for every
engine, so every HF engine must sample the same tokens (checked).

Engines (HF engines in this process, interleaved trajectory by trajectory so load from other
processes hits them alike; each engine starts every batch from an empty prefix cache):
- `legacy`: the sampler as it was (engine="legacy", prefix_reuse=False), one call per state: each
  prompt prefilled from scratch, its KV copied into the K rows, decoded with the model's SDPA.
- `reuse`: shared-prefix decoding + prefix reuse across calls, one call per state.
- `reuse_batched`: the same, with up to --states-per-call consecutive states in ONE call (the
  profiler's path now; all 10 by default): each trajectory's longest prompt is prefilled once,
  every turn's rows read their prefix of its KV, all rows share each decode step's weight reads,
  and finished rows leave the batch.
- `vllm`: vLLM's offline engine (CPU build, its own venv `.venv-vllm`, `make vllm-venv`), in a
  subprocess after the HF engines, one call per profiler batch, same prompts and per-state seeds
  (vLLM's own RNG: different tokens); engine start reported separately. Skipped (and said so) when
  `.venv-vllm` is absent, unless --vllm require.
- The profiling phase: `pivot_algo.profiler.profile` on the same states (sampling + the local
  sandbox verifier), before (one call per state, legacy engine) vs after (the default).

Reported: samples/s and generated tokens/s per engine (total wall time of the sampling calls), CPU
seconds, prompt tokens computed vs reused, the ratio to `legacy`, whether each engine's samples
equal `legacy`'s token for token with the largest log-prob difference; the machine's load average
at each stage.

Usage:
    .venv/bin/python benchmarks/generation.py                    # SmolLM2-135M (default)
    .venv/bin/python benchmarks/generation.py --model tiny --vllm off
Writes benchmarks/results/generation.json (or --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from benchmarks._terminal_workload import consecutive_turns
from pivot_algo.policy import load_policy
from pivot_algo.rollout import stable_seed

# name -> (generate keywords, whether a trajectory's states go in one call)
HF_ENGINES = {
    "legacy": ({"engine": "legacy", "prefix_reuse": False}, False),
    "reuse": ({"engine": "shared_prefix", "prefix_reuse": True}, False),
    "reuse_batched": ({"engine": "shared_prefix", "prefix_reuse": True}, True),
}
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def _sample_kwargs(args: argparse.Namespace) -> dict:
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature}


def _profiler_batches(states, states_per_call: int) -> list[list]:
    """The profiler's batches: consecutive states, `states_per_call` at most (profiler.state_batches)."""
    return [list(states[i:i + states_per_call]) for i in range(0, len(states), states_per_call)]


def _seeds(args: argparse.Namespace, states) -> list[int]:
    """Per-state seeds exactly as the profiler derives them."""
    return [stable_seed(args.seed, st.trajectory_id, st.turn) for st in states]


def run_hf(args: argparse.Namespace, policy, states) -> dict[str, dict]:
    """All HF engines, interleaved profiler batch by profiler batch (rotating which goes first).
    Per-state engines make one call per state; `reuse_batched` one call per batch (the profiler's path)."""
    warm = states[0].prompt[:48]
    for kw, _ in HF_ENGINES.values():  # warm the code paths (short prompt) before timing
        policy.generate([warm], 2, max_new_tokens=4, seed=0, **kw)
    res: dict[str, dict] = {name: {"wall_s": [], "cpu_s": [], "samples": [], "prompt_tokens_computed": 0,
                                   "prompt_tokens_reused": 0, "calls": 0} for name in HF_ENGINES}
    names = list(HF_ENGINES)
    for i, group in enumerate(_profiler_batches(states, args.states_per_call)):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            kw, batched = HF_ENGINES[name]
            calls = [group] if batched else [[st] for st in group]
            policy.clear_prefix_cache()  # each engine starts fresh (none gets another's KV)
            before = dataclasses.replace(policy.prefix_cache.stats)
            w0, c0 = time.perf_counter(), time.process_time()
            for call in calls:
                out = policy.generate([st.prompt for st in call], args.k, seeds=_seeds(args, call),
                                      **_sample_kwargs(args), **kw)
                res[name]["samples"].extend([(c.token_ids, c.logprobs) for c in g] for g in out)
            res[name]["wall_s"].append(time.perf_counter() - w0)
            res[name]["cpu_s"].append(time.process_time() - c0)
            res[name]["calls"] += len(calls)
            if kw["prefix_reuse"]:
                after = policy.prefix_cache.stats
                res[name]["prompt_tokens_reused"] += after.reused_tokens - before.reused_tokens
                res[name]["prompt_tokens_computed"] += after.computed_tokens - before.computed_tokens
            else:
                res[name]["prompt_tokens_computed"] += sum(len(st.prompt) for st in group)
        print(f"  batch {i + 1} ({len(group)} states of {len({st.trajectory_id for st in group})} trajectories, prompts "
              f"{min(len(st.prompt) for st in group)}-{max(len(st.prompt) for st in group)} tokens): "
              + ", ".join(f"{n} {res[n]['wall_s'][-1]:.2f} s" for n in names) + f"; load {os.getloadavg()[0]:.2f}",
              flush=True)
    return res


def run_vllm_subprocess(args: argparse.Namespace, states) -> dict | None:
    if args.vllm == "off":
        return None
    if not VLLM_PYTHON.exists():
        if args.vllm == "require":
            raise SystemExit(f"--vllm require: {VLLM_PYTHON} is missing; build it with `make vllm-venv`")
        return {"skipped": f"{VLLM_PYTHON} is missing (build it with `make vllm-venv`)"}
    with tempfile.TemporaryDirectory(prefix="pivotrl-genbench-") as tmp:
        inputs = Path(tmp) / "states.json"
        inputs.write_text(json.dumps([{"trajectory_id": s.trajectory_id, "turn": s.turn, "prompt": s.prompt}
                                      for s in states]))
        cmd = [str(VLLM_PYTHON), __file__, "--worker", "vllm", "--inputs", str(inputs), "--model", args.model,
               "--k", str(args.k), "--max-new-tokens", str(args.max_new_tokens), "--temperature",
               str(args.temperature), "--threads", str(args.threads), "--seed", str(args.seed),
               "--states-per-call", str(args.states_per_call)]
        # vLLM's CPU worker ignores torch.set_num_threads: pin its OpenMP threads to as many cores.
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": os.environ.get(
            "VLLM_CPU_OMP_THREADS_BIND", "0" if args.threads == 1 else f"0-{args.threads - 1}")}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.vllm_timeout, env=env, check=False)
    if proc.returncode != 0:
        msg = f"vLLM worker failed (exit {proc.returncode}): {proc.stderr[-2500:]}"
        if args.vllm == "require":
            raise SystemExit(msg)
        return {"skipped": msg}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def vllm_worker(args: argparse.Namespace) -> None:
    """Runs inside .venv-vllm: engine start, one warm-up call, then the states in order."""
    from pivot_algo.policy.vllm_backend import VLLMGenerator

    torch.set_num_threads(args.threads)
    states = json.loads(Path(args.inputs).read_text())
    policy = load_policy(args.model)
    t0 = time.perf_counter()
    gen = VLLMGenerator(policy)
    start_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen.generate([states[0]["prompt"][:48]], 2, max_new_tokens=4, seed=0)
    first_call_s = time.perf_counter() - t0
    wall: list[float] = []
    samples: list[list] = []
    # The profiler's batches, one call each (vLLM batches the requests and caches their prefixes).
    for group in _profiler_batches(states, args.states_per_call):
        seeds = [stable_seed(args.seed, st["trajectory_id"], st["turn"]) for st in group]
        w0 = time.perf_counter()
        out = gen.generate([st["prompt"] for st in group], args.k, seeds=seeds, **_sample_kwargs(args))
        wall.append(time.perf_counter() - w0)
        samples.extend([(c.token_ids, c.logprobs) for c in g] for g in out)
    # Agreement: HF's log-probs of vLLM's samples on the first state (same weights, same temperature).
    with torch.no_grad():
        scored = policy.group_logprobs(states[0]["prompt"], [ids for ids, _ in samples[0]],
                                       temperature=args.temperature)
    diffs = [abs(a - b) for i, (ids, lps) in enumerate(samples[0])
             for a, b in zip(lps, scored.logprobs[i, : len(ids)].tolist())]
    gen.close()
    print(json.dumps({"engine_start_s": start_s, "first_call_s": first_call_s, "wall_s": wall,
                      "samples": samples, "max_abs_logprob_diff_vs_hf_first_state": max(diffs),
                      "mean_abs_logprob_diff_vs_hf_first_state": sum(diffs) / len(diffs)}))


def run_profiler_phase(args: argparse.Namespace, policy, states) -> dict[str, Any]:
    """`pivot_algo.profiler.profile` itself on the same states (sampling + the env's verifier, local
    sandbox): `before` = the profiler as it was (one call per state, legacy engine, no reuse),
    `after` = today's default (a trajectory's states per call, shared-prefix engine, reuse). The
    two write the same profile (same per-state seeds): checked line by line."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401  (registers the envs)
    from pivot_algo.policy.prefix_cache import PrefixKVCache
    from pivot_algo.profiler import ProfileConfig, profile, read_profile
    from pivot_algo.rollout import Rollouts, StartState

    trajectories = {s.trajectory_id: s.trajectory.to_dict() for s in states}  # each once, in order
    env = gym.make("PivotTerminal-v0", trajectories=list(trajectories.values()), sandbox="local")
    start_states = [StartState(s.trajectory_id, s.turn) for s in states]
    out: dict[str, Any] = {}
    lines = {}
    saved_engine, saved_cache = policy.engine, policy.prefix_cache
    sides = ("before", "after") if args.profiler_first == "before" else ("after", "before")
    try:
        for name in sides:
            policy.engine = "legacy" if name == "before" else "shared_prefix"
            policy.prefix_cache = PrefixKVCache(0 if name == "before" else 8)
            config = ProfileConfig(k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                   seed=args.seed, states_per_call=1 if name == "before" else args.states_per_call)
            with tempfile.TemporaryDirectory(prefix="pivotrl-prof-") as tmp:
                c0 = time.process_time()
                report = profile(Rollouts(policy, env), start_states, config, Path(tmp) / "profile.jsonl",
                                 progress=False)
                lines[name] = read_profile(Path(tmp) / "profile.jsonl")
            out[name] = {"seconds": report.seconds, "cpu_s": time.process_time() - c0,
                         "samples": report.samples, "mean_reward": report.mean_reward,
                         "pivots_kept": report.pivots_kept, "load_1min_after": os.getloadavg()[0]}
            print(f"  profiler {name}: {report.seconds:.1f} s for {len(states)} states; load {os.getloadavg()[0]:.2f}",
                  flush=True)
    finally:
        policy.engine, policy.prefix_cache = saved_engine, saved_cache
        env.close()
    out["same_profile_lines"] = lines["before"] == lines["after"]
    out["speedup"] = {"wall": out["before"]["seconds"] / out["after"]["seconds"],
                      "cpu": out["before"]["cpu_s"] / out["after"]["cpu_s"]}
    return out


def summarise(name: str, r: dict, reference: dict | None) -> dict:
    wall = sum(r["wall_s"])
    samples = sum(len(g) for g in r["samples"])
    tokens = sum(len(ids) for g in r["samples"] for ids, _ in g)
    out = {"wall_s": wall, "samples": samples, "generated_tokens": tokens, "samples_per_s": samples / wall,
           "tokens_per_s": tokens / wall, "per_call_group_wall_s": r["wall_s"]}
    for key in ("cpu_s", "calls", "prompt_tokens_computed", "prompt_tokens_reused", "engine_start_s", "first_call_s",
                "max_abs_logprob_diff_vs_hf_first_state", "mean_abs_logprob_diff_vs_hf_first_state"):
        if key in r:
            out[key] = sum(r[key]) if key == "cpu_s" else r[key]
    if reference is not None:
        same = diff = 0
        max_lp = 0.0
        for g_ref, g in zip(reference["samples"], r["samples"]):
            for (ids_ref, lp_ref), (ids, lp) in zip(g_ref, g):
                if list(ids_ref) == list(ids):
                    same += 1
                    max_lp = max([max_lp] + [abs(a - b) for a, b in zip(lp_ref, lp)])
                else:
                    diff += 1
        out["samples_identical_to_legacy"] = f"{same}/{same + diff}"
        out["max_abs_logprob_diff_vs_legacy"] = max_lp
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="'smollm2-135m' (default), 'tiny' or a saved policy dir")
    ap.add_argument("--trajectories", type=int, default=2)
    ap.add_argument("--last-turns", type=int, default=5, help="consecutive turns per trajectory (its last ones)")
    ap.add_argument("--k", type=int, default=8, help="samples per state (profiling K)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=0.8, help="the smollm_terminal preset's profiling temperature")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the smollm_terminal preset uses 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--states-per-call", type=int, default=16, help="the profiler's batch (profile.states_per_call)")
    ap.add_argument("--vllm", choices=["auto", "off", "require"], default="auto")
    ap.add_argument("--profiler", choices=["on", "off"], default="on",
                    help="also time pivot_algo.profiler.profile (sampling + verifier) before vs after")
    ap.add_argument("--profiler-first", choices=["before", "after"], default="before")
    ap.add_argument("--hf", choices=["on", "off"], default="on",
                    help="off: only the vLLM engine (its numbers then have no side-by-side HF ratio)")
    ap.add_argument("--vllm-timeout", type=int, default=1800)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "generation.json"))
    ap.add_argument("--worker", choices=["vllm"], help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        vllm_worker(args)
        return

    torch.set_num_threads(args.threads)
    load = {"start": os.getloadavg()}
    policy = load_policy(args.model)
    states = consecutive_turns(policy, trajectories=args.trajectories, last_turns=args.last_turns)
    lengths = [len(s.prompt) for s in states]
    print(f"{len(states)} states ({args.trajectories} trajectories x last {args.last_turns} turns), prompts "
          f"{min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}); K={args.k} x "
          f"{args.max_new_tokens} new tokens, T={args.temperature}, {args.threads} threads; load {load['start']}")
    hf = run_hf(args, policy, states) if args.hf == "on" else {}
    load["after_hf"] = os.getloadavg()
    prof = run_profiler_phase(args, policy, states) if args.profiler == "on" and args.hf == "on" else None
    load["after_profiler"] = os.getloadavg()
    vllm = run_vllm_subprocess(args, states)
    load["end"] = os.getloadavg()

    summary = {name: summarise(name, r, hf["legacy"]) for name, r in hf.items()}
    if vllm is not None and "skipped" not in vllm:
        summary["vllm"] = summarise("vllm", vllm, None)
    base = summary["legacy"]["samples_per_s"] if "legacy" in summary else float("nan")
    for s in summary.values():
        s["speedup_vs_legacy"] = s["samples_per_s"] / base

    headers = ["engine", "calls", "samples/s", "tokens/s", "wall s", "CPU s", "prompt tok computed/reused",
               "x legacy", "same samples as legacy"]
    print(" | ".join(headers))
    for name, s in summary.items():
        print(" | ".join([name, str(s.get("calls", "-")), f"{s['samples_per_s']:.2f}", f"{s['tokens_per_s']:.1f}",
                          f"{s['wall_s']:.1f}", f"{s.get('cpu_s', float('nan')):.1f}",
                          f"{s.get('prompt_tokens_computed', '-')}/{s.get('prompt_tokens_reused', '-')}",
                          f"{s['speedup_vs_legacy']:.2f}x", s.get("samples_identical_to_legacy", "-")]))
    if "vllm" in summary:
        v = summary["vllm"]
        print(f"vllm engine start {v['engine_start_s']:.1f} s (not in its wall time), first call {v['first_call_s']:.1f} s; "
              f"HF log-probs of vLLM samples differ by max {v['max_abs_logprob_diff_vs_hf_first_state']:.2e} "
              f"(mean {v['mean_abs_logprob_diff_vs_hf_first_state']:.2e})")
    elif vllm is not None:
        print(f"vllm: skipped: {vllm['skipped'][:300]}")
    if prof is not None:
        print(f"profiling phase (profiler.profile, sampling + local verifier): before {prof['before']['seconds']:.1f} s, "
              f"after {prof['after']['seconds']:.1f} s -> {prof['speedup']['wall']:.2f}x wall, "
              f"{prof['speedup']['cpu']:.2f}x CPU; same profile lines: {prof['same_profile_lines']}")
    print(f"load average (1/5/15 min): {load}")

    report = {"model": args.model, "k": args.k, "max_new_tokens": args.max_new_tokens,
              "temperature": args.temperature, "threads": args.threads,
              "states": [{"trajectory_id": s.trajectory_id, "turn": s.turn, "prompt_tokens": len(s.prompt)}
                         for s in states],
              "engines": {n: {"generate": kw, "one_call_per_trajectory": b} for n, (kw, b) in HF_ENGINES.items()},
              "summary": summary, "profiler_phase": prof, "vllm_note": (vllm or {}).get("skipped"),
              "load_avg": load, "method": __doc__.split("\n\n")[1],
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
