"""The paper's Table 1 in miniature: every method x seed on the miniature world (pivot_algo/miniworld.py),
with 95% bootstrap intervals over tasks and seeds, paired differences vs SFT, costs, and plots.

    python benchmarks/paper_table.py --preset ci      # the tooling check, a few minutes
    python benchmarks/paper_table.py --preset full    # the table (held-out "test" phase, 3 seeds)
    python benchmarks/paper_table.py --preset demo    # `make demo`: the same world, 1 seed, fewer tasks
    pivotrl table --preset full                       # the same

Per seed: a tiny model (pivot_algo/policy/tiny.py, seeded init) is pre-trained by SFT on a broad mix
(group-A families + tool use + a little of group B) and cached; every method then starts from that
base on the same in-domain (group B) training trajectories:

    base, sft, pivotrl, pivotrl_paper (verifier="paper"), pivotrl_exact_match, pivotrl_random_turns, e2e_grpo

and is evaluated by greedy whole episodes on held-out tasks: in-domain (group B) and out-of-domain
(group A, tool use). Each (seed, method) cell is written to `cells/` as soon as it finishes; a
killed run started again skips the finished cells (and resumes profiling where its file stops).

Outputs in benchmarks/results/paper_table/<preset>/: table.md, results.json (every raw number and
per-seed result), efficiency_turns.png, efficiency_wall.png, in_vs_out.png. Every grid configuration
run is appended to benchmarks/results/paper_table/log.jsonl (what was tried, not only the last).

Costs per method: rollout turns = model calls generated (PivotRL's include its profiling), sandbox
executions (every action an env evaluated, verification and replay included), generated tokens,
sandbox seconds, wall seconds, optimiser steps: all methods get the same optimiser-step budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pivot_algo import miniworld
from pivot_algo.config import RunConfig
from pivot_algo.pipeline import (
    NoPivotsError,
    add_costs,
    close_rollouts,
    load_model,
    make_env,
    make_rollouts,
    paper_costs,
    run_profile,
    run_train,
)
from pivot_algo.rollout import Rollouts

log = logging.getLogger("paper_table")

RESULTS = ROOT / "benchmarks" / "results" / "paper_table"
METHODS = ("base", "sft", "pivotrl", "pivotrl_paper", "pivotrl_exact_match", "pivotrl_random_turns", "e2e_grpo")
LABELS = {"base": "base (pre-trained)", "sft": "SFT", "pivotrl": "PivotRL", "pivotrl_paper": "PivotRL, paper verifier",
          "pivotrl_exact_match": "PivotRL, exact match", "pivotrl_random_turns": "PivotRL, random turns",
          "e2e_grpo": "E2E-RL (GRPO)"}
# method -> (registered algorithm, env verifier, which profile its pivots come from)
ALGOS = {"sft": ("sft", "execution", None), "pivotrl": ("pivotrl", "execution", "execution"),
         "pivotrl_paper": ("pivotrl", "paper", "paper"),
         "pivotrl_exact_match": ("pivotrl_exact_match", "execution", "execution"),
         "pivotrl_random_turns": ("pivotrl_random_turns", "execution", None), "e2e_grpo": ("e2e_grpo", "execution", None)}


@dataclasses.dataclass
class GridPreset:
    """Everything a grid run depends on; its hash names the cache of bases and the cell files."""

    phase: str = "test"
    """Task seed ranges: "dev" while designing the world, "test" for the final table."""
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = METHODS
    pretrain: dict = dataclasses.field(default_factory=lambda: {"group_a": 300, "tool": 200, "group_b": 60})
    pretrain_steps: int = 700
    """Long enough for the copy circuit to form: on dev, seed 0's loss broke from ~0.75 to ~0.4 near step 200,
    seed 1's near step 350-400, and a variant world's not within 500 (see log.jsonl)."""
    pretrain_lr: float = 3e-3
    pretrain_batch: int = 16
    """Sequences per pre-training step."""
    train_tasks: int = 32
    """In-domain (group B) training trajectories shared by every method."""
    eval_in: int = 120
    eval_ood: int = 100
    """Held-out tasks per out-of-domain suite (group A, tool use)."""
    steps: int = 20
    """Optimiser steps of every trained method (equal budget)."""
    sft_lr: float = 1e-3
    rl_lr: float = 5e-4
    sft_batch: int = 8
    """Trajectories per SFT step."""
    pivots_per_step: int = 8
    group_size: int = 8
    e2e_tasks_per_step: int = 4
    e2e_group_size: int = 4
    profile_k: int = 8
    lambda_diff: float = 0.6
    max_new_tokens: int = 16
    """Longest completion (a tool call is 10 tokens of the world's tokenizer, an expression <= 7)."""
    temperature: float = 1.0

    def key(self) -> str:
        """Names what a cell depends on: everything but the lists of seeds and methods (so a run on a
        subset of them fills the same cells that the whole grid reads)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("seeds", "methods")}
        d["world"] = miniworld.WORLD_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


PRESETS = {
    "ci": GridPreset(phase="dev", seeds=(0, 1), pretrain={"group_a": 120, "tool": 40, "group_b": 12},
                     pretrain_steps=60, pretrain_batch=8, train_tasks=16, eval_in=24, eval_ood=12, steps=6, pivots_per_step=6,
                     group_size=6, e2e_tasks_per_step=2, e2e_group_size=4, profile_k=6),
    "dev": GridPreset(phase="dev"),
    # The final table: held-out "test" tasks and seeds fixed before it ran (world designed on dev only).
    "full": GridPreset(phase="test", seeds=(0, 1, 2), eval_in=100, eval_ood=100),
    # `make demo`: the same world and bases as full (seed 0's base is shared through the cache), fewer
    # seeds and tasks so that it fits ~12 minutes on a quiet machine.
    "demo": GridPreset(phase="test", seeds=(0,), eval_in=60, eval_ood=40),
}


# ----------------------------------------------------------------------------- world and configs

def world(preset: GridPreset) -> dict[str, list[dict]]:
    """The task sets of a phase: in-domain training trajectories (canonical demonstrations) and the
    held-out evaluation suites. Pre-training tasks are built per seed in `pretrain_base`."""
    p = preset.phase
    return {"train": miniworld.tasks("B", "train", p, preset.train_tasks),
            "eval_in": miniworld.tasks("B", "eval", p, preset.eval_in),
            "eval_ood_a": miniworld.tasks("A", "eval", p, preset.eval_ood),
            "eval_tool": miniworld.tasks("tool", "eval", p, preset.eval_ood)}


def run_config(preset: GridPreset, seed: int, trajectories: list[dict], out: Path) -> RunConfig:
    """A typed pipeline config for the miniature world (same validation as any preset)."""
    rl = {"pivots_per_step": preset.pivots_per_step, "group_size": preset.group_size,
          "max_new_tokens": preset.max_new_tokens, "temperature": preset.temperature}
    common = {"steps": preset.steps, "tensorboard": False}
    return RunConfig.from_dict({
        "name": "paper_table", "model": "tiny", "seed": seed, "output_dir": str(out), "progress": False,
        "env": {"id": "pivot_algo.miniworld:MiniWorldEnv", "kwargs": {}, "trajectories": trajectories},
        "profile": {"k": preset.profile_k, "lambda_diff": preset.lambda_diff, "max_new_tokens": preset.max_new_tokens,
                    "temperature": preset.temperature},
        "trainers": {
            "sft": {**common, "learning_rate": preset.sft_lr,
                    "algorithm_config": {"unit": "trajectory", "trajectories_per_step": preset.sft_batch}},
            "pivotrl": {**common, "learning_rate": preset.rl_lr, "algorithm_config": rl},
            "pivotrl_exact_match": {**common, "learning_rate": preset.rl_lr, "algorithm_config": rl},
            "pivotrl_random_turns": {**common, "learning_rate": preset.rl_lr, "algorithm_config": rl},
            "e2e_grpo": {**common, "learning_rate": preset.rl_lr, "algorithm_config": {
                "tasks_per_step": preset.e2e_tasks_per_step, "group_size": preset.e2e_group_size,
                "max_new_tokens": preset.max_new_tokens, "temperature": preset.temperature}}},
        "eval": {"max_new_tokens": preset.max_new_tokens, "temperature": 0.0}})


def packed_examples(policy: Any, trajectories: list[dict]) -> list[tuple[str, list[int], list[float]]]:
    """Each trajectory as (family, token sequence, loss mask with 1 on the demonstration's assistant
    turns): the same packing as SFT's unit="trajectory"."""
    import types

    from pivot_algo.algorithms.sft import SFT

    env = miniworld.MiniWorldEnv(trajectories)
    rollouts = Rollouts(policy, env)
    sft = SFT()
    out = []
    for tid in rollouts.trajectory_ids():
        family = rollouts.trajectory(tid).task["family"]
        ctx: Any = types.SimpleNamespace(rollouts=rollouts)  # _packed_group reads only ctx.rollouts
        for g in sft._packed_group(ctx, rollouts.states([tid])):
            mask = g.token_masks[0] if g.token_masks else [1.0] * len(g.completions[0])
            out.append((family, g.prompt_ids + g.completions[0], [0.0] * len(g.prompt_ids) + list(mask)))
    env.close()
    return out


def pretrain_base(preset: GridPreset, seed: int) -> Path:
    """The seed's base model: a freshly initialised tiny model SFT-trained on the broad mix, cached
    under $PIVOTRL_CACHE/miniworld-base-<hash> by (mix, steps, lr, phase, seed). Sequences are padded
    into one batch per step (the trainer's SFT runs one forward per conversation: fine for the
    compared methods, too slow for pre-training on a shared CPU)."""
    import torch

    from pivot_algo.policy.hf import HFPolicy
    from pivot_algo.policy.models import _build_cached
    from pivot_algo.policy.tiny import build_model

    spec = {"mix": preset.pretrain, "steps": preset.pretrain_steps, "lr": preset.pretrain_lr, "phase": preset.phase,
            "batch": preset.pretrain_batch, "seed": seed, "v": 4, "world": miniworld.WORLD_VERSION}
    name = "miniworld-base-" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        tokenizer = miniworld.build_world_tokenizer()  # digits one token each: see its docstring
        policy = HFPolicy(build_model(len(tokenizer), seed), tokenizer, name="tiny")
        examples = packed_examples(policy, miniworld.PretrainMix(**preset.pretrain).trajectories(preset.phase, seed))
        model = policy.model
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=preset.pretrain_lr)
        warmup = max(1, preset.pretrain_steps // 10)
        # Linear warm-up (the usual guard against Adam's large first steps), then cosine decay to 10%.
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (
            0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / preset.pretrain_steps)))))
        rng = np.random.default_rng(seed)
        pad = int(tokenizer.pad_token_id or 0)
        losses = []
        for step in range(preset.pretrain_steps):
            picks = rng.choice(len(examples), size=min(preset.pretrain_batch, len(examples)), replace=False)
            batch = [examples[i][1:] for i in picks]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attn = torch.zeros((len(batch), width), dtype=torch.long)
            weights = torch.zeros((len(batch), width), dtype=torch.float32)
            for i, (seq, mask) in enumerate(batch):
                ids[i, : len(seq)] = torch.tensor(seq)
                attn[i, : len(seq)] = 1
                weights[i, : len(mask)] = torch.tensor(mask)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                    reduction="none").view(len(batch), -1)
            w = weights[:, 1:]
            loss = (nll * w).sum() / w.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 50 == 0:
                print(f"pre-training base seed {seed}: step {step + 1}/{preset.pretrain_steps}, loss "
                      f"{np.mean(losses[-50:]):.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
        model.eval()
        policy.save(str(tmp))
        (tmp / "pretrain.json").write_text(json.dumps({**spec, "seconds": time.perf_counter() - t0,
                                                       "examples": len(examples), "loss_first": losses[:3],
                                                       "loss_last": losses[-3:]}))

    return _build_cached(name, build)


# ----------------------------------------------------------------------------- one cell

def evaluate(cfg: RunConfig, model: str, suites: dict[str, list[dict]], tasks_per_batch: int = 24) -> dict[str, Any]:
    """Greedy whole episodes of `model` on each held-out suite: per-task success and costs."""
    from pivot_algo.eval.in_domain import episode_success

    policy = load_model(model)
    out = {}
    for name, trajectories in suites.items():
        env = make_env(cfg, "pivot", trajectories)

        def episode_env(t: list[dict] = trajectories) -> Any:
            return make_env(cfg, "episode", t)

        rollouts = Rollouts(policy, env, episode_env_factory=episode_env)
        try:
            ep = episode_success(rollouts, [t["id"] for t in trajectories], max_new_tokens=cfg.eval.max_new_tokens,
                                 temperature=0.0, seed=cfg.seed, tasks_per_batch=tasks_per_batch)
        finally:
            close_rollouts(rollouts)
        out[name] = {"success": ep["success"], "per_task": ep["per_task"], "mean_turns": ep["mean_turns"]}
    return out


def profile_for(preset: GridPreset, cfg: RunConfig, base: str, verifier: str, train_ids: list[str], seed_dir: Path
                ) -> tuple[list[Any], dict[str, float], dict[str, Any]]:
    """Pivots of the base on the training states under `verifier` (resumable file), with their cost.
    The cost of a finished profile is stored beside it, so a resumed grid charges it identically."""
    path = seed_dir / f"profile_{verifier}.jsonl"
    cost_file = path.with_suffix(".costs.json")
    t0 = time.perf_counter()
    policy = load_model(base)
    rollouts = make_rollouts(cfg, policy, verifier=verifier)
    try:
        report = run_profile(cfg, rollouts, rollouts.states(train_ids), path)
        costs = paper_costs(rollouts.costs(), wall_seconds=time.perf_counter() - t0)
    finally:
        close_rollouts(rollouts)
    if cost_file.exists() and report.resumed_states == report.candidate_states:
        costs = json.loads(cost_file.read_text())
    else:
        prior = json.loads(cost_file.read_text()) if cost_file.exists() and report.resumed_states else {}
        costs = add_costs(prior, costs)
        cost_file.write_text(json.dumps(costs))
    return report.pivots, costs, report.summary()


def run_cell(preset: GridPreset, seed: int, method: str, tasks: dict[str, list[dict]], out: Path) -> dict[str, Any]:
    seed_dir = out / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    base = str(pretrain_base(preset, seed))  # shared by every method of the seed: not charged to any
    cfg = run_config(preset, seed, tasks["train"], seed_dir)
    suites = {"in_domain": tasks["eval_in"], "ood_group_a": tasks["eval_ood_a"], "ood_tool": tasks["eval_tool"]}
    train_ids = [t["id"] for t in tasks["train"]]
    cell: dict[str, Any] = {"seed": seed, "method": method, "note": None, "pivots": None, "profile": None}
    model = base
    costs: dict[str, float] = {k: 0 for k in ("rollout_turns", "sandbox_executions", "generated_tokens",
                                              "sandbox_seconds", "wall_seconds", "optimizer_steps")}
    if method != "base":
        algo, verifier, profile_verifier = ALGOS[method]
        pivots: list[Any] = []
        if profile_verifier is not None:
            pivots, pcost, cell["profile"] = profile_for(preset, cfg, base, profile_verifier, train_ids, seed_dir)
            costs = add_costs(costs, pcost)
            cell["pivots"] = len(pivots)
            cell["candidate_states"] = cell["profile"]["candidate_states"]
        try:
            summary = run_train(cfg, algo, base, train_ids, pivots, seed_dir, method, env_kwargs={"verifier": verifier})
            model = summary["policy"]
            costs = add_costs(costs, {k: summary["costs"][k] for k in costs})
        except NoPivotsError as e:
            cell["note"] = f"no pivots, the base is evaluated: {e}"
    # wall_seconds: profiling (as first measured, also when its file is read back) + training; the
    # held-out evaluation is the same for every method and is not a cost of it (the base's is 0).
    cell["costs"] = costs
    t_eval = time.perf_counter()
    cell["eval"] = evaluate(cfg, model, suites)
    cell["eval_seconds"] = time.perf_counter() - t_eval  # the same held-out episodes for every method
    return cell


# ----------------------------------------------------------------------------- statistics

def bootstrap(matrix: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% interval of a [seeds, tasks] matrix, resampling seeds and tasks (two-level)."""
    rng = np.random.default_rng(seed)
    s, t = matrix.shape
    means = np.empty(reps)
    for i in range(reps):
        rows = rng.integers(0, s, s)
        cols = rng.integers(0, t, t)
        means[i] = matrix[np.ix_(rows, cols)].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(matrix.mean()), float(lo), float(hi)


def success_matrix(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], method: str, suite: str) -> np.ndarray:
    rows = []
    for s in seeds:
        per = cells[(s, method)]["eval"][suite]["per_task"]
        rows.append([0.0 if v is None else float(v) for v in per])
    return np.array(rows, dtype=float)


def summarise(preset: GridPreset, cells: dict[tuple[int, str], dict]) -> dict[str, Any]:
    seeds, methods = preset.seeds, preset.methods
    out: dict[str, Any] = {"methods": {}}
    for m in methods:
        row: dict[str, Any] = {}
        for suite in ("in_domain", "ood_group_a", "ood_tool"):
            mat = success_matrix(cells, seeds, m, suite)
            row[suite] = dict(zip(("mean", "lo", "hi"), bootstrap(mat)))
            row[suite]["per_seed"] = mat.mean(axis=1).tolist()
        ood_all = np.concatenate([success_matrix(cells, seeds, m, "ood_group_a"),
                                  success_matrix(cells, seeds, m, "ood_tool")], axis=1)  # both OOD suites, pooled
        row["ood"] = dict(zip(("mean", "lo", "hi"), bootstrap(ood_all)))
        if "sft" in methods and m != "sft":
            for suite in ("in_domain", "ood"):
                mine = success_matrix(cells, seeds, m, "in_domain") if suite == "in_domain" else ood_all
                sft = (success_matrix(cells, seeds, "sft", "in_domain") if suite == "in_domain" else np.concatenate(
                    [success_matrix(cells, seeds, "sft", "ood_group_a"), success_matrix(cells, seeds, "sft", "ood_tool")],
                    axis=1))
                row[f"{suite}_minus_sft"] = dict(zip(("mean", "lo", "hi"), bootstrap(mine - sft)))
        if "base" in methods and m != "base":
            base_ood = np.concatenate([success_matrix(cells, seeds, "base", "ood_group_a"),
                                       success_matrix(cells, seeds, "base", "ood_tool")], axis=1)
            row["ood_minus_base"] = dict(zip(("mean", "lo", "hi"), bootstrap(ood_all - base_ood)))
            row["in_domain_minus_base"] = dict(zip(("mean", "lo", "hi"), bootstrap(
                success_matrix(cells, seeds, m, "in_domain") - success_matrix(cells, seeds, "base", "in_domain"))))
        cost_keys = ("rollout_turns", "sandbox_executions", "generated_tokens", "sandbox_seconds", "wall_seconds",
                     "optimizer_steps")
        row["costs"] = {k: float(np.mean([cells[(s, m)]["costs"][k] for s in seeds])) for k in cost_keys}
        pivots = [cells[(s, m)]["pivots"] for s in seeds if cells[(s, m)]["pivots"] is not None]
        cand = [int(cells[(s, m)]["candidate_states"]) for s in seeds if cells[(s, m)].get("candidate_states")]
        row["pivots"] = float(np.mean(pivots)) if pivots else None
        row["pivot_share"] = float(np.sum(pivots) / np.sum(cand)) if pivots and cand else None
        row["notes"] = [cells[(s, m)]["note"] for s in seeds if cells[(s, m)]["note"]]
        out["methods"][m] = row
    out["claims"] = claims(preset, cells)
    return out


def _suite_matrix(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], method: str, suite: str) -> np.ndarray:
    if suite == "ood":  # both out-of-domain suites, pooled per seed
        return np.concatenate([success_matrix(cells, seeds, method, "ood_group_a"),
                               success_matrix(cells, seeds, method, "ood_tool")], axis=1)
    return success_matrix(cells, seeds, method, suite)


def paired(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...], a: str, b: str, suite: str) -> dict[str, float]:
    """a - b on the same seeds and tasks: mean and 95% bootstrap interval."""
    diff = _suite_matrix(cells, seeds, a, suite) - _suite_matrix(cells, seeds, b, suite)
    return dict(zip(("mean", "lo", "hi"), bootstrap(diff)))


def _sign(d: dict[str, float]) -> str:
    return "above 0" if d["lo"] > 0 else "below 0" if d["hi"] < 0 else "includes 0"


def claims(preset: GridPreset, cells: dict[tuple[int, str], dict]) -> list[dict[str, Any]]:
    """The paper's four claims, each judged by a rule fixed in advance from paired 95% intervals:
    supported when the interval(s) the claim predicts exclude 0 in its direction, contradicted when
    they exclude 0 the other way, inconclusive otherwise. Claims whose methods are not in the grid are
    left out."""
    have, seeds = set(preset.methods), preset.seeds
    out: list[dict[str, Any]] = []

    def verdict(support: bool, contra: bool) -> str:
        return "supported" if support and not contra else "contradicted" if contra else "inconclusive"

    if {"pivotrl", "sft"} <= have:
        d = paired(cells, seeds, "pivotrl", "sft", "in_domain")
        out.append({"claim": "1. in-domain, PivotRL beats SFT (paper +4.17)", "numbers": {"pivotrl-sft in-domain": d},
                    "verdict": verdict(d["lo"] > 0, d["hi"] < 0)})
    if {"pivotrl", "sft", "base"} <= have:
        sft_drop = paired(cells, seeds, "sft", "base", "ood")
        rl_keep = paired(cells, seeds, "pivotrl", "base", "ood")
        rl_vs_sft = paired(cells, seeds, "pivotrl", "sft", "ood")
        # Two halves, judged separately: SFT loses ground; PivotRL keeps it (not below the base, and above SFT).
        out.append({"claim": "2a. out-of-domain, SFT loses ground vs base (paper -9.8)",
                    "numbers": {"sft-base OOD": sft_drop},
                    "verdict": verdict(sft_drop["hi"] < 0, sft_drop["lo"] > 0)})
        out.append({"claim": "2b. out-of-domain, PivotRL keeps the base's skills (paper +0.2 vs base)",
                    "numbers": {"pivotrl-base OOD": rl_keep, "pivotrl-sft OOD": rl_vs_sft},
                    "verdict": verdict(rl_keep["lo"] <= 0 <= rl_keep["hi"] and rl_vs_sft["lo"] > 0,
                                       rl_keep["hi"] < 0)})
    if {"pivotrl", "e2e_grpo"} <= have:
        d = paired(cells, seeds, "pivotrl", "e2e_grpo", "in_domain")
        turns = {m: float(np.mean([cells[(s, m)]["costs"]["rollout_turns"] for s in seeds])) for m in ("pivotrl", "e2e_grpo")}
        ratio = turns["e2e_grpo"] / max(turns["pivotrl"], 1.0)
        # "reaches E2E's accuracy with fewer turns": not below E2E (interval not entirely < 0) while
        # spending at most half its rollout turns; contradicted when PivotRL is below E2E, or spends
        # more turns without being above it.
        out.append({"claim": "3. PivotRL reaches E2E-RL's in-domain accuracy with ~4x fewer rollout turns",
                    "numbers": {"pivotrl-e2e in-domain": d, "rollout turns e2e/pivotrl": ratio},
                    "verdict": verdict(d["hi"] >= 0 and ratio >= 2, d["hi"] < 0 or (ratio < 1 and d["lo"] <= 0))})
    for abl, name in (("pivotrl_random_turns", "random turns instead of pivots"),
                      ("pivotrl_exact_match", "exact match instead of the functional reward"),
                      ("pivotrl_paper", "the paper's verifier instead of execution")):
        if {"pivotrl", abl} <= have:
            d = paired(cells, seeds, abl, "pivotrl", "in_domain")
            out.append({"claim": f"4. ablation: {name} does worse in-domain", "numbers": {f"{abl}-pivotrl in-domain": d},
                        "verdict": verdict(d["hi"] < 0, d["lo"] > 0)})
    return out


def _ci(d: dict | None, pct: bool = True) -> str:
    if not d:
        return "-"
    f = 100.0 if pct else 1.0
    return f"{d['mean'] * f:.1f} [{d['lo'] * f:.1f}, {d['hi'] * f:.1f}]"


def markdown(preset: GridPreset, summary: dict[str, Any], meta: dict[str, Any]) -> str:
    head = ["method", "in-domain % [95% CI]", "Δ in-domain vs SFT", "OOD group A %", "OOD tool use %",
            "OOD all %", "Δ OOD vs base", "rollout turns", "sandbox exec.", "gen. tokens", "sandbox s", "wall s",
            "steps / updates", "pivots (share)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in preset.methods:
        r = summary["methods"][m]
        c = r["costs"]
        piv = "-" if r["pivots"] is None else f"{r['pivots']:.1f} ({(r['pivot_share'] or 0) * 100:.1f}%)"
        lines.append("| " + " | ".join([
            LABELS[m], _ci(r["in_domain"]), _ci(r.get("in_domain_minus_sft")), _ci(r["ood_group_a"]), _ci(r["ood_tool"]),
            _ci(r["ood"]), _ci(r.get("ood_minus_base")), f"{c['rollout_turns']:.0f}", f"{c['sandbox_executions']:.0f}",
            f"{c['generated_tokens']:.0f}", f"{c['sandbox_seconds']:.1f}", f"{c['wall_seconds']:.0f}",
            f"{0 if m == 'base' else preset.steps} / {c['optimizer_steps']:.1f}", piv]) + " |")
    notes = [(f"preset `{meta['preset']}` ({preset.phase} tasks), seeds {list(preset.seeds)}; in-domain = group B, "
              f"{preset.eval_in} held-out tasks; OOD = group A and tool use, {preset.eval_ood} held-out tasks each; "
              "greedy whole episodes"),
             "intervals: 95% bootstrap over seeds and tasks (2000 resamples); Δ columns are paired (same seeds, same tasks)",
             ("costs are means per seed; rollout turns = model calls generated (PivotRL rows include profiling); "
              "sandbox exec. = actions the env executed or verified; wall s = profiling + training, evaluation "
              f"excluded; every trained method has {preset.steps} training steps; updates = those that stepped the "
              "optimiser (a step whose groups all have zero reward variance skips its update)"),
             (f"grid wall time {meta['wall_seconds']:.0f} s ({meta['cells_run']} cells run now, "
              f"{meta['cells_resumed']} read back), load average at start {meta['load_start']}, at end "
              f"{meta['load_end']}")]
    for m in preset.methods:
        for n in sorted(set(summary["methods"][m]["notes"])):
            seeds_with = sum(x == n for x in summary["methods"][m]["notes"])
            notes.append(f"{LABELS[m]} ({seeds_with} of {len(preset.seeds)} seeds): {n.split(':')[0]}")
    claim_lines = ["", "| claim | paired difference(s), 95% CI | verdict |", "|---|---|---|"]
    for c in summary.get("claims", []):
        nums = "; ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {_ci(v)} ({_sign(v)})"
                         for k, v in c["numbers"].items())
        claim_lines.append(f"| {c['claim']} | {nums} | {c['verdict']} |")
    if len(claim_lines) == 3:
        claim_lines = []
    return "\n".join(lines + [""] + [f"- {n}" for n in notes] + claim_lines) + "\n"


def plots(preset: GridPreset, summary: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    methods = preset.methods
    for key, xlabel, fname in (("rollout_turns", "rollout turns (model calls)", "efficiency_turns.png"),
                               ("wall_seconds", "wall time (s)", "efficiency_wall.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in methods:
            r = summary["methods"][m]
            y = r["in_domain"]
            ax.errorbar([r["costs"][key]], [y["mean"] * 100], yerr=[[(y["mean"] - y["lo"]) * 100],
                                                                  [(y["hi"] - y["mean"]) * 100]], fmt="o", capsize=3,
                        label=LABELS[m])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("in-domain success (%)")
        ax.set_title(f"in-domain accuracy vs {xlabel.split(' (')[0]} ({preset.phase})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        written.append(fname)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        r = summary["methods"][m]
        if "in_domain_minus_base" not in r:
            continue
        dx, dy = r["in_domain_minus_base"], r["ood_minus_base"]
        ax.errorbar([dx["mean"] * 100], [dy["mean"] * 100],
                    xerr=[[(dx["mean"] - dx["lo"]) * 100], [(dx["hi"] - dx["mean"]) * 100]],
                    yerr=[[(dy["mean"] - dy["lo"]) * 100], [(dy["hi"] - dy["mean"]) * 100]], fmt="o", capsize=3,
                    label=LABELS[m])
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("in-domain change vs base (points)")
    ax.set_ylabel("out-of-domain change vs base (points)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "in_vs_out.png", dpi=110)
    plt.close(fig)
    written.append("in_vs_out.png")
    return written


# ----------------------------------------------------------------------------- the grid

def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_grid(preset_name: str, out_root: Path = RESULTS, preset: GridPreset | None = None,
             work_root: Path | None = None) -> dict[str, Any]:
    """Run (or finish) the grid of `preset_name`. Small results go to `out_root/<preset>/` (committable);
    checkpoints and profiles to `work_root/<preset>/` (default runs/paper_table, git-ignored)."""
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine: one thread is several times faster
    preset = preset or PRESETS[preset_name]
    out = out_root / preset_name
    cells_dir = out / "cells" / preset.key()
    work = (work_root or ROOT / "runs" / "paper_table") / preset_name
    cells_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    with (out_root / "log.jsonl").open("a", encoding="utf-8") as fh:  # every configuration ever run
        fh.write(json.dumps({"event": "start", "preset": preset_name, "key": preset.key(), "world": miniworld.WORLD_VERSION, "commit": _git_commit(),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": load_start,
                             "config": dataclasses.asdict(preset)}) + "\n")
    tasks = world(preset)
    cells: dict[tuple[int, str], dict] = {}
    run_now = resumed = 0
    for seed in preset.seeds:
        for method in preset.methods:
            path = cells_dir / f"seed{seed}__{method}.json"
            if path.exists():
                cells[(seed, method)] = json.loads(path.read_text())
                resumed += 1
                continue
            log.info("cell seed=%d method=%s", seed, method)
            cell = run_cell(preset, seed, method, tasks, work / preset.key())
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cell))
            tmp.replace(path)  # a kill mid-write leaves no half cell under the real name
            cells[(seed, method)] = cell
            run_now += 1
            print(f"[{time.perf_counter() - t0:6.0f} s] seed {seed} {method:22s} in-domain "
                  f"{cell['eval']['in_domain']['success']:.3f}  ood-A {cell['eval']['ood_group_a']['success']:.3f}  "
                  f"tool {cell['eval']['ood_tool']['success']:.3f}  turns {cell['costs']['rollout_turns']:.0f}",
                  flush=True)
    summary = summarise(preset, cells)
    meta = {"preset": preset_name, "key": preset.key(), "commit": _git_commit(), "wall_seconds": time.perf_counter() - t0,
            "cells_run": run_now, "cells_resumed": resumed, "load_start": load_start,
            "load_end": [round(x, 2) for x in os.getloadavg()]}
    table = markdown(preset, summary, meta)
    (out / "table.md").write_text(table)
    pngs = plots(preset, summary, out)
    result = {"meta": meta, "config": dataclasses.asdict(preset), "summary": summary,
              "cells": [cells[(s, m)] for s in preset.seeds for m in preset.methods], "plots": pngs}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    with (out_root / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": "done", "preset": preset_name, "key": preset.key(), "meta": meta,
                             "in_domain": {m: summary["methods"][m]["in_domain"]["mean"] for m in preset.methods}}) + "\n")
    print(table)
    return result


def world_check(preset_name: str, preset: GridPreset, out_root: Path, work_root: Path, max_eval: int = 24
                ) -> dict[str, Any]:
    """The world's design check (run on dev tasks): per seed, does the pre-trained base have pivots
    (mixed-outcome groups at a sizeable share of the in-domain candidate states), and how competent is
    it in and out of domain? Logged to log.jsonl like every grid run."""
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    tasks = world(preset)
    small = {"in_domain": tasks["eval_in"][:max_eval], "ood_group_a": tasks["eval_ood_a"][:max_eval],
             "ood_tool": tasks["eval_tool"][:max_eval]}
    rows = []
    for seed in preset.seeds:
        seed_dir = work_root / preset_name / preset.key() / f"seed{seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        base = str(pretrain_base(preset, seed))
        cfg = run_config(preset, seed, tasks["train"], seed_dir)
        pivots, costs, prof = profile_for(preset, cfg, base, "execution", [t["id"] for t in tasks["train"]], seed_dir)
        ev = evaluate(cfg, base, small)
        row = {"seed": seed, "pivots": len(pivots), "candidate_states": prof["candidate_states"],
               "pivot_share": len(pivots) / max(prof["candidate_states"], 1), "start_mean_reward": prof["mean_reward"],
               "base_success": {k: v["success"] for k, v in ev.items()}, "eval_tasks": max_eval,
               "profile_model_calls": costs["rollout_turns"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    pivot_total = sum(r["pivots"] for r in rows)
    cand_total = sum(r["candidate_states"] for r in rows)
    share = pivot_total / max(cand_total, 1)
    half = 1.96 * math.sqrt(share * (1 - share) / max(cand_total, 1))  # normal approximation over states
    summary = {"event": "world_check", "preset": preset_name, "key": preset.key(), "world": miniworld.WORLD_VERSION, "commit": _git_commit(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "config": dataclasses.asdict(preset),
               "rows": rows, "pivot_share": share, "pivot_share_ci95": [max(0.0, share - half), min(1.0, share + half)],
               "seconds": time.perf_counter() - t0, "load": [round(x, 2) for x in os.getloadavg()]}
    out_root.mkdir(parents=True, exist_ok=True)
    with (out_root / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(summary) + "\n")
    print(f"pivot share {share:.3f} (95% CI {summary['pivot_share_ci95'][0]:.3f}-{summary['pivot_share_ci95'][1]:.3f}) "
          f"over {cand_total} candidate states, {len(rows)} seed(s)")
    return summary


def rejudge(preset_name: str, out_root: Path = RESULTS) -> dict[str, Any]:
    """Recompute the summary, claims, table and plots of a finished grid from its results.json (its
    cells and the run's meta are kept as they were): for a change in how numbers are summarised, never
    a reason to re-run cells."""
    out = out_root / preset_name
    result = json.loads((out / "results.json").read_text())
    fields = {f.name for f in dataclasses.fields(GridPreset)}
    cfg = {k: tuple(v) if k in ("seeds", "methods") else v for k, v in result["config"].items() if k in fields}
    preset = GridPreset(**cfg)
    cells = {(c["seed"], c["method"]): c for c in result["cells"]}
    summary = summarise(preset, cells)
    meta = {**result["meta"], "rejudged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rejudged_commit": _git_commit()}
    table = markdown(preset, summary, meta)
    (out / "table.md").write_text(table)
    result.update(meta=meta, summary=summary, plots=plots(preset, summary, out))
    (out / "results.json").write_text(json.dumps(result, indent=1))
    with (out_root / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": "rejudge", "preset": preset_name, "key": meta["key"], "commit": meta["rejudged_commit"],
                             "claims": [[c["claim"], c["verdict"]] for c in summary["claims"]]}) + "\n")
    print(table)
    return result


def check_filled(result: dict[str, Any]) -> list[str]:
    """Problems with a result: a missing cell or a number that is not finite (empty = all good)."""
    problems = []
    cfg = result["config"]
    have = {(c["seed"], c["method"]) for c in result["cells"]}
    for s in cfg["seeds"]:
        for m in cfg["methods"]:
            if (s, m) not in have:
                problems.append(f"missing cell seed={s} method={m}")
    for m, row in result["summary"]["methods"].items():
        for suite in ("in_domain", "ood_group_a", "ood_tool", "ood"):
            for k in ("mean", "lo", "hi"):
                if not math.isfinite(row[suite][k]):
                    problems.append(f"{m} {suite} {k} = {row[suite][k]}")
        for k, v in row["costs"].items():
            if not math.isfinite(v):
                problems.append(f"{m} cost {k} = {v}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="ci", choices=sorted(PRESETS))
    parser.add_argument("--out", default=str(RESULTS), help="results root (default benchmarks/results/paper_table)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "paper_table"),
                        help="checkpoints and profiles (default runs/paper_table, git-ignored)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds instead of the preset's (e.g. 0)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the preset's methods")
    parser.add_argument("--rejudge", action="store_true",
                        help="recompute the table, claims and plots of a finished grid from its results.json (no cell re-run)")
    parser.add_argument("--world-check", action="store_true",
                        help="only pre-train the bases, profile them and evaluate them (designing the world)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    preset = PRESETS[args.preset]
    if args.world_check and preset.phase != "dev":
        parser.error("--world-check designs the world: run it on a dev-phase preset (ci or dev), never on full")
    if args.seeds:
        preset = dataclasses.replace(preset, seeds=tuple(int(x) for x in args.seeds.split(",")))
    if args.methods:
        unknown = sorted(set(args.methods.split(",")) - set(METHODS))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
        preset = dataclasses.replace(preset, methods=tuple(args.methods.split(",")))
    if args.rejudge:
        rejudge(args.preset, Path(args.out))
        return 0
    if args.world_check:
        world_check(args.preset, preset, Path(args.out), Path(args.work))
        return 0
    result = run_grid(args.preset, Path(args.out), preset, Path(args.work))
    problems = check_filled(result)
    for p in problems:
        print(f"paper_table: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
