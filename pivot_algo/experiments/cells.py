"""One cell of the grid: a (seed, method, rate) trained from the seed's base to a plateau and evaluated."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pivot_algo.config import RunConfig
from pivot_algo.experiments.bases import pretrain_base
from pivot_algo.experiments.evaluation import curve_evaluator, evaluate
from pivot_algo.experiments.presets import ALGOS, GridPreset, run_config
from pivot_algo.experiments.stages import library_versions
from pivot_algo.pipeline import (
    NoPivotsError,
    add_costs,
    close_rollouts,
    load_model,
    make_rollouts,
    paper_costs,
    run_profile,
    run_train,
)


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


STEP_METRICS = ("losses/loss", "charts/mean_reward", "charts/skipped_update", "charts/learning_rate",
                "costs/rollout_turns", "costs/wall_seconds", "costs/optimizer_steps")
"""The per-step metrics a cell keeps (the run directory's metrics.jsonl has them all)."""


def _step_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{"step": r["step"], **{k: round(float(r[k]), 6) for k in STEP_METRICS if k in r}} for r in rows]


def run_cell(preset: GridPreset, seed: int, method: str, tasks: dict[str, list[dict]], work: Path) -> dict[str, Any]:
    """One (seed, method) at the preset's rate for that method: profile (pivot methods), train with a
    validation curve until a plateau or the step cap, evaluate the model it stopped with on the
    held-out suites (the best checkpoint of its validation curve: early stopping)."""
    seed_dir = work / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    base = str(pretrain_base(preset, seed))  # shared by every method of the seed: not charged to any
    cfg = run_config(preset, seed, tasks["train"], seed_dir)
    suites = {"in_domain": tasks["eval_in"], "ood_group_a": tasks["eval_ood_a"], "ood_tool": tasks["eval_tool"]}
    train_ids = [t["id"] for t in tasks["train"]]
    lr = preset.lr(method) if method != "base" else None
    cell: dict[str, Any] = {"seed": seed, "method": method, "lr": lr, "note": None, "pivots": None, "profile": None,
                            "curve": [], "metrics": [], "profile_costs": {}, "versions": library_versions()}
    model: Any = base
    if method == "base":  # the seed's first stage: say what pre-training cost (benchmarks/protocol_time.py)
        cell["pretrain_seconds"] = json.loads((Path(base) / "pretrain.json").read_text()).get("seconds")
    costs: dict[str, float] = {k: 0 for k in ("rollout_turns", "sandbox_executions", "generated_tokens",
                                              "sandbox_seconds", "wall_seconds", "optimizer_steps")}
    if method != "base":
        algo, verifier, profile_verifier = ALGOS[method]
        pivots: list[Any] = []
        if profile_verifier is not None:
            pivots, pcost, cell["profile"] = profile_for(preset, cfg, base, profile_verifier, train_ids, seed_dir)
            costs = add_costs(costs, pcost)
            cell["profile_costs"] = pcost
            cell["pivots"] = len(pivots)
            cell["candidate_states"] = cell["profile"]["candidate_states"]
        try:
            evaluator = curve_evaluator(preset, cfg, tasks)
            summary = run_train(cfg, algo, base, train_ids, pivots, seed_dir, f"{method}__lr{lr:g}",
                                env_kwargs={"verifier": verifier}, evaluator=evaluator)
            model = load_model(summary["policy"])
            if evaluator.best_state is not None:  # early stopping: the best validation checkpoint
                model.model.load_state_dict(evaluator.best_state)
            costs = add_costs(costs, {k: summary["costs"][k] for k in costs})
            cell["curve"] = summary["curve"]
            cell["best_step"] = summary["curve"][evaluator.best_evaluation]["step"]
            cell["metrics"] = _step_metrics(Path(summary["run_dir"]))
            cell["steps"] = summary["steps"]
            cell["plateau"] = summary["steps"] < preset.max_steps
        except NoPivotsError as e:
            cell["note"] = f"no pivots, the base is evaluated: {e}"
    # wall_seconds: profiling (as first measured, also when its file is read back) + training; the curve's
    # evaluations and the held-out evaluation are not a cost of the method.
    cell["costs"] = costs
    t_eval = time.perf_counter()
    cell["eval"] = evaluate(cfg, model, suites)
    cell["eval_seconds"] = time.perf_counter() - t_eval
    return cell


def profile_cell(preset: GridPreset, seed: int, tasks: dict[str, list[dict]], work: Path) -> dict[str, Any]:
    """PivotRL's profile of the seed's base without training (the world check's pivot count), with the
    base's stage-1 draws (how often the copy circuit failed to form: the world's robustness)."""
    seed_dir = work / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    base = pretrain_base(preset, seed)
    cfg = run_config(preset, seed, tasks["train"], seed_dir)
    pivots, costs, summary = profile_for(preset, cfg, str(base), ALGOS["pivotrl"][2] or "execution",
                                         [t["id"] for t in tasks["train"]], seed_dir)
    stage1 = json.loads((Path(base) / "pretrain.json").read_text()).get("stage1", {})
    draws = [{k: r[k] for k in ("draw", "group_a", "tool") if k in r} | {"loss_last": r.get("loss_last", [None])[-1]}
             for r in stage1.get("draws", [])]
    return {"seed": seed, "pivots": len(pivots), "profile": summary, "profile_costs": costs,
            "stage1_draws": draws, "stage1_chosen": stage1.get("chosen_draw"), "versions": library_versions()}
