"""The same PivotRL step done by our trainer and by TRL's `GRPOTrainer`, side by side.

Both sides get: the same model (SmolLM2-135M by default), the same pivot states as prompts (real
turns of the built-in terminal suite; TRL receives each prompt as the text our chat template renders,
and the script checks that TRL's tokenizer turns it into exactly our prompt ids), the env's verifier
(PivotTerminal-v0, local sandbox) as the reward function, the same G, completion length, sampling
temperature, clip range (0.2 / 0.28), no KL, token-level loss (TRL `loss_type="bnpo"`: the token
mean of the batch, which is ours), group-std advantages, and the same optimiser (AdamW, constant
learning rate, no weight decay, grad-norm clip 1.0, one optimiser step per batch).

Measured:
1. **Full steps** (sample G per pivot, judge, update), N steps per side, each side in a FRESH
   subprocess: median time per step, peak memory (`ru_maxrss` of that process, and its increase
   over the resident set once the model and env are loaded), mean reward per step.
2. **The update alone on one identical batch** (same prompt ids, same completions - the
   demonstration's real tokens plus sampled ones -, same advantages): our loss vs TRL's
   `_compute_loss` value and gradients (agreement within a tolerance), and loss+backward time,
   interleaved in one process.

Known differences, kept on purpose (each side as users run it): TRL normalises advantages by the
unbiased group std (ours: biased, as in the paper's recipe) and keeps zero-variance groups (they
contribute 0 to the loss); ours drops them online, and a step whose groups all agree skips the
update (reported as `skipped_update`). TRL recomputes the prompt in each of the G rows, in
sampling and in the loss; ours computes it once per group (and reuses it across turns when sampling).

Usage:
    .venv/bin/python benchmarks/compare_trl.py                       # SmolLM2-135M, 1 pivot x G=4 x 32 tokens, 2 steps
    .venv/bin/python benchmarks/compare_trl.py --model tiny --steps 3
Writes benchmarks/results/compare_trl.json (or --out). Needs the `trl` extra (pip install -e '.[trl]').
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from benchmarks._common import maxrss_mb, rss_mb
from benchmarks._terminal_workload import TurnState, consecutive_turns
from pivot_algo.policy import load_policy

LOSS_ATOL = 1e-4  # |our loss - TRL loss| on the identical batch
GRAD_RTOL = 1e-3  # ||g_ours - g_trl|| / ||g_trl||


def _states(policy, args) -> list[TurnState]:
    return consecutive_turns(policy, trajectories=args.pivots, last_turns=1)


def _env(states: list[TurnState]):
    import gymnasium as gym

    import pivot_envs  # noqa: F401  (registers the envs)

    return gym.make("PivotTerminal-v0", trajectories=[s.trajectory.to_dict() for s in states], sandbox="local")


def verifier_reward(env, states: list[TurnState]):
    """The env's verifier as a TRL reward function: (prompts, completions, state=[...]) -> rewards;
    None (TRL's 'no reward') for masked verdicts (infrastructure failures), never 0."""
    def reward(prompts, completions, state, **_: Any) -> list[float | None]:
        out: list[float | None] = []
        for text, i in zip(completions, state):
            st = states[int(i)]
            env.reset(options={"trajectory": st.trajectory_id, "turn": st.turn})
            (verdict,) = env.unwrapped.judge_actions([text])
            out.append(None if verdict.masked else float(verdict.reward))
        return out

    reward.__name__ = "pivot_verifier"
    return reward


def _grpo_config(args, out_dir: str, batch_rows: int, eot: int):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=batch_rows, gradient_accumulation_steps=1,
        num_generations=args.group, max_completion_length=args.max_new_tokens, temperature=args.temperature,
        top_p=1.0, learning_rate=args.lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
        adam_beta1=0.9, adam_beta2=0.999, beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="bnpo",
        scale_rewards="group", max_steps=args.steps, logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        save_strategy="no", seed=args.seed, remove_unused_columns=False, shuffle_dataset=False,
        disable_tqdm=True, generation_kwargs={"eos_token_id": eot, "pad_token_id": eot})


def _trl_trainer(args, policy, states, reward_fn, out_dir: str):
    from datasets import Dataset
    from trl import GRPOTrainer

    texts = [policy.tokenizer.decode(s.prompt, skip_special_tokens=False) for s in states]
    for s, text in zip(states, texts):  # TRL tokenizes the text itself: it must give our ids back
        ids = policy.tokenizer(text=text)["input_ids"]
        if ids != s.prompt:
            raise SystemExit(f"TRL would see different prompt tokens for {s.trajectory_id} turn {s.turn} "
                             f"({len(ids)} vs {len(s.prompt)} ids): the comparison would not be on the same inputs")
    data = Dataset.from_list([{"prompt": t, "state": i} for i, t in enumerate(texts)])
    config = _grpo_config(args, out_dir, len(states) * args.group, policy.end_of_turn_id)
    return GRPOTrainer(model=policy.model, processing_class=policy.tokenizer, reward_funcs=[reward_fn], args=config,
                       train_dataset=data)


# ----------------------------------------------------------------------------- workers (fresh processes)

def worker_ours(args) -> dict:
    from pivot_algo.rollout import Rollouts, StartState
    from pivot_algo.trainer import TrainConfig, Trainer

    policy = load_policy(args.model)
    states = _states(policy, args)
    env = _env(states)
    rollouts = Rollouts(policy, env)
    with tempfile.TemporaryDirectory(prefix="pivotrl-cmp-") as tmp:
        config = TrainConfig(algorithm="pivotrl", steps=args.steps, learning_rate=args.lr, seed=args.seed,
                             output_dir=tmp, tensorboard=False, progress=False, max_grad_norm=1.0,
                             algorithm_config={"pivots_per_step": len(states), "group_size": args.group,
                                               "max_new_tokens": args.max_new_tokens, "temperature": args.temperature})
        trainer = Trainer(config, policy, rollouts, [s.trajectory_id for s in states],
                          pivots=[StartState(s.trajectory_id, s.turn) for s in states])
        rss_ready = rss_mb()
        steps = []
        for _ in range(args.steps):
            m = trainer.train_step()
            steps.append({"seconds": m["charts/step_seconds"], "collect_s": m["charts/collect_seconds"],
                          "update_s": m["charts/update_seconds"], "mean_reward": m["charts/mean_reward"],
                          "skipped_update": m.get("charts/skipped_update", 0.0), "loss": m.get("losses/loss")})
    env.close()
    return {"steps": steps, "rss_ready_mb": rss_ready, "peak_rss_mb": maxrss_mb()}


def worker_trl(args) -> dict:
    from transformers import TrainerCallback

    policy = load_policy(args.model)
    states = _states(policy, args)
    env = _env(states)
    steps: list[dict] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            steps.append({"seconds": time.perf_counter() - self.t0})

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "reward" in logs and steps:
                steps[-1]["mean_reward"] = float(logs["reward"])
                steps[-1]["loss"] = float(logs.get("loss", float("nan")))

    with tempfile.TemporaryDirectory(prefix="pivotrl-trl-") as tmp:
        trainer = _trl_trainer(args, policy, states, verifier_reward(env, states), tmp)
        trainer.add_callback(StepClock())
        rss_ready = rss_mb()
        trainer.train()
    env.close()
    return {"steps": steps, "rss_ready_mb": rss_ready, "peak_rss_mb": maxrss_mb()}


def worker_agree(args) -> dict:
    """Loss and gradients of both implementations on one identical batch; interleaved update timing."""
    import numpy as np

    from pivot_algo.algorithms.base import TrainGroup
    from pivot_algo.algorithms.pivotrl import clipped_policy_loss, group_advantages

    policy = load_policy(args.model)
    states = _states(policy, args)
    policy.model.train()
    groups = []
    for i, s in enumerate(states):
        sampled = policy.generate([s.prompt], args.group - 1, max_new_tokens=args.max_new_tokens,
                                  temperature=args.temperature, seed=args.seed + i)[0]
        # Ragged lengths (a real group is ragged; equal lengths would make the token-mean loss 0 here).
        completions = [s.reference[: args.max_new_tokens]] + [
            c.token_ids[: max(2, len(c.token_ids) - 3 * j)] for j, c in enumerate(sampled)]
        rewards = np.array([1.0] + [0.0] * (args.group - 1))  # the demonstration right, the samples wrong
        adv = group_advantages(rewards, scale_std=True, leave_one_out=False)
        with torch.no_grad():
            lp = policy.group_logprobs(s.prompt, completions, temperature=args.temperature)
        old = [lp.logprobs[j, : len(c)].tolist() for j, c in enumerate(completions)]
        groups.append(TrainGroup(prompt_ids=s.prompt, completions=completions, old_logprobs=old,
                                 advantages=adv.tolist()))

    with tempfile.TemporaryDirectory(prefix="pivotrl-trl-") as tmp:
        trainer = _trl_trainer(args, policy, states, lambda prompts, completions, **kw: [0.0] * len(prompts), tmp)
        trainer.current_gradient_accumulation_steps = 1
        trl_inputs = _trl_inputs(policy, groups)

        def ours():
            loss, _ = clipped_policy_loss(policy, groups, temperature=args.temperature, eps_low=0.2, eps_high=0.28)
            return loss

        def theirs():
            return trainer._compute_loss(policy.model, trl_inputs)

        results = {}
        for name, fn in (("ours", ours), ("trl", theirs)):
            policy.model.zero_grad(set_to_none=True)
            loss = fn()
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None])
            results[name] = (float(loss.detach()), grads)
        timings: dict[str, list[float]] = {"ours": [], "trl": []}
        for _ in range(args.update_repeats):
            for name, fn in (("ours", ours), ("trl", theirs)):
                policy.model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                fn().backward()
                timings[name].append(time.perf_counter() - t0)
    (l_ours, g_ours), (l_trl, g_trl) = results["ours"], results["trl"]
    return {"loss_ours": l_ours, "loss_trl": l_trl, "loss_abs_diff": abs(l_ours - l_trl),
            "grad_rel_diff": float((g_ours - g_trl).norm() / g_trl.norm().clamp_min(1e-12)),
            "grad_norm": float(g_trl.norm()), "update_s": timings,
            "completion_tokens": [len(c) for g in groups for c in g.completions],
            "prompt_tokens": [len(s.prompt) for s in states]}


def _trl_inputs(policy, groups) -> dict[str, torch.Tensor]:
    """TRL's training-batch layout: left-padded prompts, right-padded completions, one row per completion."""
    rows = [(g.prompt_ids, c, a) for g in groups for c, a in zip(g.completions, g.advantages)]
    p_len = max(len(p) for p, _, _ in rows)
    c_len = max(len(c) for _, c, _ in rows)
    pad = policy.pad_id
    prompt_ids = torch.full((len(rows), p_len), pad, dtype=torch.long)
    prompt_mask = torch.zeros(len(rows), p_len, dtype=torch.long)
    completion_ids = torch.full((len(rows), c_len), pad, dtype=torch.long)
    completion_mask = torch.zeros(len(rows), c_len, dtype=torch.long)
    for i, (p, c, _) in enumerate(rows):
        prompt_ids[i, p_len - len(p):] = torch.tensor(p)
        prompt_mask[i, p_len - len(p):] = 1
        completion_ids[i, : len(c)] = torch.tensor(c)
        completion_mask[i, : len(c)] = 1
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask, "advantages": torch.tensor([a for _, _, a in rows])}


# ----------------------------------------------------------------------------- driver

def _run_worker(args, name: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--model", args.model, "--pivots", str(args.pivots),
           "--group", str(args.group), "--max-new-tokens", str(args.max_new_tokens), "--steps", str(args.steps),
           "--lr", str(args.lr), "--temperature", str(args.temperature), "--threads", str(args.threads),
           "--seed", str(args.seed), "--update-repeats", str(args.update_repeats)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = time.perf_counter() - t0
    out["load_avg_after"] = os.getloadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pivots", type=int, default=1, help="pivot states per step (each a different trajectory)")
    ap.add_argument("--group", type=int, default=4, help="G: completions per pivot")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--update-repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_trl.json"))
    ap.add_argument("--worker", choices=["ours", "trl", "agree"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        fn = {"ours": worker_ours, "trl": worker_trl, "agree": worker_agree}[args.worker]
        print(json.dumps(fn(args)))
        return

    load0 = os.getloadavg()
    print(f"model {args.model}: {args.pivots} pivot(s) x G={args.group} x {args.max_new_tokens} new tokens, "
          f"{args.steps} steps per side, {args.threads} thread(s); load {load0}", flush=True)
    results = {name: _run_worker(args, name) for name in ("agree", "ours", "trl")}
    agree, ours, trl = results["agree"], results["ours"], results["trl"]

    def med(side, key="seconds"):
        return statistics.median(s[key] for s in side["steps"])

    summary = {
        "step_s": {"ours": med(ours), "trl": med(trl)},
        "step_time_ratio_ours_over_trl": med(ours) / med(trl),
        "peak_rss_mb": {"ours": ours["peak_rss_mb"], "trl": trl["peak_rss_mb"]},
        "peak_rss_ratio_ours_over_trl": ours["peak_rss_mb"] / trl["peak_rss_mb"],
        "step_rss_increase_mb": {"ours": ours["peak_rss_mb"] - ours["rss_ready_mb"],
                                 "trl": trl["peak_rss_mb"] - trl["rss_ready_mb"]},
        "rewards_per_step": {"ours": [s.get("mean_reward") for s in ours["steps"]],
                             "trl": [s.get("mean_reward") for s in trl["steps"]]},
        "ours_skipped_updates": sum(s["skipped_update"] for s in ours["steps"]),
        "update_only_s": {k: statistics.median(v) for k, v in agree["update_s"].items()},
        "loss": {"ours": agree["loss_ours"], "trl": agree["loss_trl"], "abs_diff": agree["loss_abs_diff"],
                 "tolerance": LOSS_ATOL, "agree": agree["loss_abs_diff"] <= LOSS_ATOL},
        "grad_rel_diff": agree["grad_rel_diff"], "grad_tolerance": GRAD_RTOL,
    }
    summary["update_only_ratio_ours_over_trl"] = summary["update_only_s"]["ours"] / summary["update_only_s"]["trl"]
    u, s = summary["update_only_s"], summary
    print(f"full step (median of {args.steps}): ours {s['step_s']['ours']:.1f} s, TRL {s['step_s']['trl']:.1f} s -> "
          f"ours/TRL {s['step_time_ratio_ours_over_trl']:.2f}x (goal <= 0.33x)")
    print(f"peak RSS: ours {ours['peak_rss_mb']:.0f} MiB, TRL {trl['peak_rss_mb']:.0f} MiB -> "
          f"{s['peak_rss_ratio_ours_over_trl']:.2f}x (goal <= 1.0x); step increase ours "
          f"{s['step_rss_increase_mb']['ours']:.0f} / TRL {s['step_rss_increase_mb']['trl']:.0f} MiB")
    print(f"rewards per step: ours {s['rewards_per_step']['ours']} (skipped updates {s['ours_skipped_updates']:.0f}), "
          f"TRL {s['rewards_per_step']['trl']}")
    print(f"identical batch: loss ours {agree['loss_ours']:.6f} vs TRL {agree['loss_trl']:.6f} "
          f"(|diff| {agree['loss_abs_diff']:.1e}, tol {LOSS_ATOL}); grad rel diff {agree['grad_rel_diff']:.1e} "
          f"(tol {GRAD_RTOL}); loss+backward ours {u['ours']:.1f} s vs TRL {u['trl']:.1f} s -> "
          f"{s['update_only_ratio_ours_over_trl']:.2f}x")
    print(f"load avg: start {load0}, after agree {agree['load_avg_after']}, after ours {ours['load_avg_after']}, "
          f"after TRL {trl['load_avg_after']}")
    report = {"args": vars(args), "summary": summary, "raw": results, "method": __doc__.split("\n\n")[1:4],
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                          "load_avg_start": load0}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
