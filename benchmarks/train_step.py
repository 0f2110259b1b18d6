"""Train-step benchmark: the shared-prefix loss step vs the naive per-sequence step.

Setting (PivotRL's): one state = a real ~1k-token conversation (a turn of the built-in terminal suite,
rendered by the project's chat template), G = 8 completions of ~48 tokens sampled from the model. One "step" = per-token log-probs of the G
completions (HFPolicy.group_logprobs, or naive_group_logprobs which recomputes the prompt in each of
the G rows), a GRPO-style token-level loss, backward (and, with --optimizer-step, an AdamW step).

Method:
- Memory: each variant runs one step in its own fresh subprocess (same inputs, same weights), so
  neither sees the other's allocations, and its peak memory can be read from the kernel:
  `resource.getrusage(RUSAGE_SELF).ru_maxrss` (peak resident set of the process). We report that
  peak, and its increase over the resident set measured just before the first step (model loaded,
  inputs built) - the memory the step itself needs. (tracemalloc cannot see torch's allocations.)
- Time: both variants in one process, interleaved (shared, naive, shared, ...) after a short warm-up,
  so that load from other processes hits both alike; wall and process-CPU seconds, medians.
- The completions are sampled from the model itself (seeded) with HFPolicy.generate, cut/padded to
  lengths around --completion-tokens (or random ids with --completions random: same cost, no
  sampling time); both variants score the same ids, and their log-probs are compared (max
  |difference| reported) as a correctness check.

Usage:
    .venv/bin/python benchmarks/train_step.py                  # SmolLM2-135M (default)
    .venv/bin/python benchmarks/train_step.py --model tiny     # quick run
Writes benchmarks/results/train_step.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from benchmarks._common import maxrss_mb, rss_mb
from benchmarks._terminal_workload import consecutive_turns
from pivot_algo.policy import load_policy


def build_inputs(model: str, prefix_tokens: int, group: int, completion_tokens: int, seed: int,
                 completions_kind: str = "sampled") -> dict:
    """The prompt of a REAL conversation (a turn of the built-in terminal suite, train split, whose
    prompt is closest to prefix_tokens) and G completions sampled from the model at that turn."""
    policy = load_policy(model)
    states = consecutive_turns(policy, trajectories=12, last_turns=2)
    state = min(states, key=lambda s: abs(len(s.prompt) - prefix_tokens))
    prompt = state.prompt
    # Lengths spread around the target (a real group is ragged), sampled from the model itself.
    lengths = [max(8, completion_tokens + d) for d in
               [(-8 + 16 * i // max(1, group - 1)) for i in range(group)]]
    if completions_kind == "random":  # same cost as real samples (compute does not depend on the ids)
        rng = torch.Generator().manual_seed(seed)
        completions = [torch.randint(3, len(policy.tokenizer), (n,), generator=rng).tolist() for n in lengths]
        return {"prompt": prompt, "completions": completions, "generate_s": None,
                "generate_note": "completions: random token ids (--completions random)"}
    t0 = time.perf_counter()
    samples = policy.generate([prompt], group, max_new_tokens=max(lengths), temperature=1.0, seed=seed)[0]
    gen_s = time.perf_counter() - t0
    completions = []
    for c, n in zip(samples, lengths):
        ids = c.token_ids[:n]
        ids = ids + [ids[-1]] * (n - len(ids))  # a sample that ended early is padded with real ids
        completions.append(ids)
    return {"prompt": prompt, "completions": completions, "generate_s": gen_s,
            "state": f"{state.trajectory_id} turn {state.turn}",
            "generate_note": f"HFPolicy.generate, 1 prompt of {len(prompt)} tokens x {group} samples x "
                             f"{max(lengths)} new tokens (prefix prefilled once)"}


def _make_step(policy, variant: str, prompt: list[int], completions: list[list[int]], optimizer_step: bool):
    """One train step of `variant` ("shared" | "naive"); returns the detached log-probs."""
    fn = policy.group_logprobs if variant == "shared" else policy.naive_group_logprobs
    advantages = torch.linspace(-1.0, 1.0, len(completions))[:, None]  # GRPO-like signed weights
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-6) if optimizer_step else None

    def step(p: list[int] = prompt, comps: list[list[int]] = completions) -> torch.Tensor:
        policy.model.zero_grad(set_to_none=True)
        out = fn(p, comps)
        loss = -(out.logprobs * advantages[: len(comps)] * out.mask).sum() / out.mask.sum()
        loss.backward()
        if opt is not None:
            opt.step()
        return out.logprobs.detach()

    return step


def memory_worker(args: argparse.Namespace) -> None:
    """Fresh process, one variant, one step: peak RSS increase over the RSS just before the step.
    Prints one JSON line (with the step's log-probs, for the correctness check)."""
    torch.set_num_threads(args.threads)
    data = json.loads(Path(args.inputs).read_text())
    policy = load_policy(args.model)
    policy.model.train()
    step = _make_step(policy, args.worker, data["prompt"], data["completions"], args.optimizer_step)
    rss_before, maxrss_before = rss_mb(), maxrss_mb()
    lp = step()
    maxrss = maxrss_mb()
    print(json.dumps({"rss_before_step_mb": rss_before, "peak_rss_mb": maxrss,
                      "step_peak_increase_mb": maxrss - rss_before,
                      "peak_visible": maxrss > maxrss_before,  # False: the step stayed below the load-time peak
                      "logprobs": lp.tolist()}))


def time_variants(args: argparse.Namespace, data: dict) -> dict[str, dict]:
    """Time both variants in ONE process, interleaved (shared, naive, shared, naive, ...), so that
    load from other processes on the machine hits both alike. Wall and process-CPU seconds per step."""
    policy = load_policy(args.model)
    policy.model.train()
    steps = {v: _make_step(policy, v, data["prompt"], data["completions"], args.optimizer_step)
             for v in ("shared", "naive")}
    for step in steps.values():  # cheap warm-up of the code paths (short prompt, two completions)
        step(data["prompt"][:64], data["completions"][:2])
    timings: dict[str, dict] = {v: {"wall_s": [], "cpu_s": []} for v in steps}
    for _ in range(args.repeats):
        for variant, step in steps.items():
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            timings[variant]["wall_s"].append(time.perf_counter() - w0)
            timings[variant]["cpu_s"].append(time.process_time() - c0)
    for t in timings.values():
        t["median_wall_s"] = statistics.median(t["wall_s"])
        t["median_cpu_s"] = statistics.median(t["cpu_s"])
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="'smollm2-135m' (default), 'tiny' or a saved policy dir")
    ap.add_argument("--prefix-tokens", type=int, default=1000)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--completion-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer-step", action="store_true", help="include an AdamW step in each timed step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--completions", choices=["sampled", "random"], default="sampled",
                    help="sample the G completions from the model (default; also times generate) or use random ids")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_step.json"))
    ap.add_argument("--worker", choices=["shared", "naive"], help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        memory_worker(args)
        return

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    data = build_inputs(args.model, args.prefix_tokens, args.group, args.completion_tokens, args.seed,
                        args.completions)
    memory: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="pivotrl-bench-") as tmp:
        inputs = Path(tmp) / "inputs.json"
        inputs.write_text(json.dumps(data))
        for variant in ("shared", "naive"):
            cmd = [sys.executable, __file__, "--worker", variant, "--inputs", str(inputs), "--model", args.model,
                   "--threads", str(args.threads)]
            if args.optimizer_step:
                cmd.append("--optimizer-step")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
            if proc.returncode != 0:
                raise SystemExit(f"{variant} memory worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            memory[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    timing = time_variants(args, data)

    lp_s, lp_n = torch.tensor(memory["shared"].pop("logprobs")), torch.tensor(memory["naive"].pop("logprobs"))
    max_diff = float((lp_s - lp_n).abs().max())
    n_prompt, comp_lens = len(data["prompt"]), [len(c) for c in data["completions"]]
    ts, tn = timing["shared"], timing["naive"]
    ms, mn = memory["shared"], memory["naive"]
    report = {
        "model": args.model, "conversation": data.get("state", "random ids"), "prefix_tokens": n_prompt, "group": args.group, "completion_tokens": comp_lens,
        "tokens_through_model": {"shared": n_prompt + sum(comp_lens), "naive": args.group * n_prompt + sum(comp_lens)},
        "optimizer_step": args.optimizer_step, "threads": args.threads, "repeats": args.repeats,
        "timing": timing, "memory": memory,
        "speedup_wall": tn["median_wall_s"] / ts["median_wall_s"],
        "speedup_cpu": tn["median_cpu_s"] / ts["median_cpu_s"],
        "memory_ratio_step_increase": mn["step_peak_increase_mb"] / max(ms["step_peak_increase_mb"], 1e-9),
        "max_abs_logprob_diff": max_diff,
        "generate_s": data["generate_s"], "generate_note": data["generate_note"],
        "timing_method": "one process, variants interleaved per repeat after a short warm-up; wall = perf_counter, "
                         "cpu = process_time (all threads); medians",
        "memory_method": "fresh subprocess per variant, one step; step_peak_increase = ru_maxrss after the step - "
                         "VmRSS right before it (model loaded, inputs built)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "load_avg_1m_start": load_start, "load_avg_1m_end": os.getloadavg()[0]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))

    print(f"model {args.model}: prefix {n_prompt} tokens, G={args.group} completions of {min(comp_lens)}-"
          f"{max(comp_lens)} tokens, fwd+bwd{' + AdamW' if args.optimizer_step else ''}, "
          f"{args.threads} threads, median of {args.repeats} interleaved repeats")
    print(f"{'':26}{'shared-prefix':>15}{'naive':>12}{'naive/shared':>14}")
    print(f"{'step wall time (s)':26}{ts['median_wall_s']:15.2f}{tn['median_wall_s']:12.2f}{report['speedup_wall']:13.2f}x")
    print(f"{'step CPU time (s)':26}{ts['median_cpu_s']:15.2f}{tn['median_cpu_s']:12.2f}{report['speedup_cpu']:13.2f}x")
    print(f"{'step peak +RSS (MiB)':26}{ms['step_peak_increase_mb']:15.0f}{mn['step_peak_increase_mb']:12.0f}"
          f"{report['memory_ratio_step_increase']:13.2f}x")
    print(f"{'process peak RSS (MiB)':26}{ms['peak_rss_mb']:15.0f}{mn['peak_rss_mb']:12.0f}")
    print(f"{'tokens through the model':26}{report['tokens_through_model']['shared']:15d}"
          f"{report['tokens_through_model']['naive']:12d}")
    print(f"max |logprob shared - naive| = {max_diff:.2e}; machine load avg {load_start:.1f} -> {os.getloadavg()[0]:.1f}")
    if data["generate_s"] is not None:
        print(f"generate: {data['generate_s']:.1f} s ({data['generate_note']})")
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
