"""Learning rates of the SmolLM2 row (issue 18), chosen on dev data before the row's test numbers are read.

    nohup .venv/bin/python benchmarks/smollm_rates.py > /tmp/smollm_rates.log 2>&1 &        # resumable
    .venv/bin/python benchmarks/smollm_rates.py --methods pivotrl                           # one shard
    .venv/bin/python benchmarks/smollm_rates.py --report-only                               # rates.md so far

Protocol, fixed before the run:
- The row's start (SFT warm-up) and its profile of the training split are the row's own stages (the same
  run directory and stage files as `benchmarks/smollm_row.py`), so every grid cell starts where the row's
  arms start and PivotRL trains on the same pivots.
- Each (method, rate) trains the row's budget (8 steps) on the row's training split. Dev data: `dev`
  trajectories of the built-in suite's `val` split (shuffled with the row's split seed), disjoint from the
  row's trajectories (which come from the `train` split). Every `every` steps (and at step 0, the start,
  evaluated once for all cells) the policy samples `eval.pivot_samples` actions at every turn of every dev
  trajectory, judged by the verifier: the dev state reward, a learning curve over training steps.
- Rule: per method the rate with the highest plateau of its dev curve (`curves.plateau_value`: the mean
  over the last quarter of its steps, here steps 6 and 8), ties to the lower rate. The grids are the row's
  rate x {1/3, 1, 3} on the 1-3-10 ladder: SFT 3e-5, 1e-4, 3e-4; PivotRL 1e-5, 3e-5, 1e-4.
- Curve-based comparison on dev, one seed: the chosen pair paired by state at the last point, and the
  training wall time (evaluation excluded, PivotRL's profiling included) each chosen curve needs to reach
  the highest dev reward both reach (not model calls: SFT generates none).

Written: `benchmarks/results/smollm_rates/` (rates.md, results.json, curves.png). One seed and ~30 dev
states: the state-reward intervals (bootstrap over dev trajectories) say how far apart two rates must be
to be told apart; a rate inside another's interval is chosen by the rule, not shown better.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.smollm_row import (
    GRID_STAGE_PREFIX,
    RowSizes,
    Stages,
    _states,
    sample_states,
    shared_stages,
    trajectory_of,
)
from pivot_algo import pipeline
from pivot_algo.config import RunConfig, load_run_config
from pivot_algo.experiments.curves import calls_to_reach, plateau_value
from pivot_algo.experiments.stats import cluster_bootstrap
from pivot_algo.rollout import StartState
from pivot_envs.trajectory import load_trajectories

log = logging.getLogger("smollm_rates")

RESULTS_DIR = REPO / "benchmarks" / "results" / "smollm_rates"
DEV_KEY = "eval/dev_state_reward"
METHODS = ("sft", "pivotrl")


@dataclasses.dataclass
class GridSizes:
    dev_trajectories: int = 6  # as many as the row's held-out split
    every: int = 2  # steps between dev evaluations (the row trains 8)
    rate_factors: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # on the half-decade ladder ..., 1e-5, 3e-5, 1e-4, ...
    bootstrap_reps: int = 2000
    extra_rates: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    """Rates added to a method's grid (`--extra-rates pivotrl=3e-6`): the edge check when the rule chose a
    grid's lowest or highest rate."""


def dev_trajectories(cfg: RunConfig, n: int) -> list[dict[str, Any]]:
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    val = builtin_trajectories("val")
    order = np.random.default_rng(cfg.data.split_seed).permutation(len(val))
    return [val[i] for i in order[:n]]


@dataclasses.dataclass
class DevStateEvaluator:
    """trainer.Evaluator: the dev state reward every `every` steps; never stops early (the row's fixed budget).
    The start's point is computed once and handed in (`start`), since every cell starts from it."""

    cfg: RunConfig
    trajectories: list[dict[str, Any]]
    states: list[StartState]
    sizes: RowSizes
    start: dict[str, Any]
    every: int = 2
    points: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def evaluate(self, policy: Any) -> dict[str, float]:
        result = (sample_states(self.cfg, policy, self.states, self.sizes, "dev-states", self.trajectories)
                  if self.points else self.start)
        self.points.append(result)
        return {DEV_KEY: state_mean(result["per_state"])}

    def should_stop(self, curve: list[dict[str, float]]) -> bool:
        return False


def state_mean(per_state: dict[str, list[float]]) -> float:
    rewards = [r for v in per_state.values() for r in v]
    return float(np.mean(rewards)) if rewards else math.nan


def grid(cfg: RunConfig, sizes: GridSizes) -> dict[str, list[float]]:
    """Each method's rates: the row's rate times `rate_factors`, rounded to the 1-3-10 ladder (3e-5 x 3 = 1e-4)."""
    def ladder(x: float) -> float:
        decade = 10 ** math.floor(math.log10(x) + 1e-9)
        return min((decade * k for k in (1, 3, 10)), key=lambda r: abs(math.log(r / x)))
    return {m: sorted({float(f"{ladder(cfg.trainer(m).values['learning_rate'] * f):.1g}") for f in sizes.rate_factors}
                      | set(sizes.extra_rates.get(m, [])))
            for m in METHODS}


def cell_stage(algo: str, lr: float) -> str:
    """The stage (file) name of one grid cell, beside the row's stages."""
    return f"{GRID_STAGE_PREFIX}{algo}_{lr:g}"


def run_grid(cfg: RunConfig, sizes: GridSizes, methods: list[str]) -> Stages:
    splits, out = pipeline.prepare(cfg)
    stages = Stages(out)
    start, prof = shared_stages(cfg, stages.run, splits, out)
    row_sizes = RowSizes()
    trajs = dev_trajectories(cfg, sizes.dev_trajectories)
    states = [StartState(t.id, k) for t in load_trajectories(trajs) for k in range(t.num_turns)]

    def dev_start() -> dict[str, Any]:
        return {**sample_states(cfg, pipeline.load_model(start), states, row_sizes, "dev-states", trajs),
                "dev_ids": [t["id"] for t in trajs]}

    start_point = stages.run(f"{GRID_STAGE_PREFIX}dev_start", dev_start)
    for algo in methods:
        for lr in grid(cfg, sizes)[algo]:
            def cell(algo: str = algo, lr: float = lr) -> dict[str, Any]:
                ev = DevStateEvaluator(cfg, trajs, states, row_sizes, start_point, every=sizes.every)
                pivots = _states(prof["train_pivots"]) if algo == "pivotrl" else []
                if algo == "pivotrl" and not pivots:
                    return {"algo": algo, "lr": lr, "skipped": "profiling kept no pivots on the training split"}
                summary = pipeline.run_train(cfg, algo, start, splits["train"], pivots, out / "rates", f"{algo}-lr{lr:g}",
                                             overrides={"learning_rate": lr}, evaluator=ev)
                return {"algo": algo, "lr": lr, "curve": summary["curve"], "costs": summary["costs"],
                        "steps": summary["steps"], "per_state": [p["per_state"] for p in ev.points],
                        "eval_seconds": summary["eval_seconds"]}
            stages.run(cell_stage(algo, lr), cell)
    return stages


def summarise(cfg: RunConfig, sizes: GridSizes, stages: Stages) -> dict[str, Any]:
    prof = stages.get("profile") or {}
    profile_costs = prof.get("costs") or {}
    cells: dict[str, dict[str, Any]] = {}
    for algo, lrs in grid(cfg, sizes).items():
        for lr in lrs:
            c = stages.get(cell_stage(algo, lr))
            if not c or c.get("skipped"):
                continue
            last = c["per_state"][-1]
            keys = sorted(k for k, v in last.items() if v)
            means = [float(np.mean(last[k])) for k in keys]
            _, lo, hi = cluster_bootstrap(means, [trajectory_of(k) for k in keys], sizes.bootstrap_reps, 1)
            cells[f"{algo}@{lr:g}"] = {
                "algo": algo, "lr": lr, "plateau": plateau_value(c["curve"], DEV_KEY),
                "final": {"mean": state_mean(last), "lo": lo, "hi": hi, "states": len(keys)},
                "curve": [{"step": p["step"], "dev": p[DEV_KEY], "calls": p["costs/rollout_turns"],
                           "wall_s": p["costs/wall_seconds"]} for p in c["curve"]],
                "optimizer_steps": c["costs"].get("optimizer_steps"), "train_wall_s": c["costs"].get("wall_seconds"),
                "eval_seconds": c["eval_seconds"]}
    chosen: dict[str, str] = {}
    for algo in METHODS:
        mine = [v for v in cells.values() if v["algo"] == algo]
        if len(mine) == len(grid(cfg, sizes)[algo]):
            best = max(mine, key=lambda v: (v["plateau"], -v["lr"]))
            chosen[algo] = f"{algo}@{best['lr']:g}"
    matched: dict[str, Any] = {}
    if len(chosen) == 2:
        # SFT generates no completions, so "model calls to matched accuracy" is 0 for it: the comparison is in
        # training wall time (evaluation excluded; PivotRL's profiling included) and, at the last point, paired.
        curves = {a: cells[chosen[a]]["curve"] for a in METHODS}
        target = min(max(p["dev"] for p in curves[a]) for a in METHODS)
        pts = {a: [{"step": p["step"], DEV_KEY: p["dev"], "costs/wall_seconds": p["wall_s"]} for p in curves[a]]
               for a in METHODS}
        wall = {a: calls_to_reach(pts[a], target, key=DEV_KEY, cost="costs/wall_seconds",
                                  offset=float(profile_costs.get("wall_seconds", 0.0)) if a == "pivotrl" else 0.0)
                for a in METHODS}
        last = {a: (stages.get(cell_stage(a, cells[chosen[a]]["lr"])) or {})["per_state"][-1] for a in METHODS}
        keys = sorted(k for k in last["sft"] if last["sft"][k] and last["pivotrl"].get(k))
        diffs = [float(np.mean(last["pivotrl"][k]) - np.mean(last["sft"][k])) for k in keys]
        diff, lo, hi = cluster_bootstrap(diffs, [trajectory_of(k) for k in keys], sizes.bootstrap_reps, 2)
        matched = {"target": target, "start": curves["sft"][0]["dev"], "wall_s": wall,
                   "pivotrl_minus_sft_last": {"diff": diff, "lo": lo, "hi": hi, "states": len(keys)}}
    start_point = stages.get(f"{GRID_STAGE_PREFIX}dev_start") or {}
    return {"cells": cells, "chosen": chosen, "matched": matched, "grid": grid(cfg, sizes),
            "row_rates": {m: cfg.trainer(m).values["learning_rate"] for m in METHODS},
            "dev_ids": start_point.get("dev_ids"), "dev_states": len(start_point.get("per_state", {})),
            "start_dev": state_mean(start_point.get("per_state", {})) if start_point else None,
            "profile_calls": float(profile_costs.get("rollout_turns", 0.0)), "sizes": dataclasses.asdict(sizes), "torch_threads": cfg.torch_threads}


def format_report(s: dict[str, Any]) -> str:
    head = ("| method | rate | dev plateau % (steps 6-8) | dev at step 8 % [95% CI, by trajectory] | optimiser steps | "
            "curve: step -> dev % (model calls) | chosen |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for name, c in s["cells"].items():
        f = c["final"]
        curve = ", ".join(f"{p['step']}: {100 * p['dev']:.1f} ({p['calls']:.0f})" for p in c["curve"])
        lines.append(f"| {c['algo']} | {c['lr']:g} | {100 * c['plateau']:.1f} | {100 * f['mean']:.1f} "
                     f"[{100 * f['lo']:.1f}, {100 * f['hi']:.1f}] | {c['optimizer_steps']:.0f} | {curve} | "
                     f"{'**chosen**' if name in s['chosen'].values() else ''} |")
    lines += ["", f"Start (SFT warm-up) on dev: {100 * (math.nan if s['start_dev'] is None else s['start_dev']):.1f}% over {s['dev_states']} states "
              f"of {len(s['dev_ids'] or [])} `val` trajectories. The row's rates: " +
              ", ".join(f"{m} {v:g}" for m, v in s["row_rates"].items()) + "."]
    if s["chosen"]:
        same = all(s["cells"][s["chosen"][m]]["lr"] == s["row_rates"][m] for m in s["chosen"])
        lines.append("Chosen: " + ", ".join(f"{m} {s['cells'][n]['lr']:g}" for m, n in s["chosen"].items())
                     + (" (the row's rates: the published row stands at the chosen rates)." if same else
                        " (not the row's rates: the row must be re-run at these)."))
    m = s["matched"]
    if m:
        d = m["pivotrl_minus_sft_last"]
        lines.append(f"At the chosen rates, step 8 on dev: PivotRL - SFT {100 * d['diff']:+.1f} points "
                     f"[{100 * d['lo']:.1f}, {100 * d['hi']:.1f}] (paired over {d['states']} states, bootstrap by "
                     f"trajectory; one seed). Highest dev reward both curves reach: {100 * m['target']:.1f}% (start "
                     f"{100 * m['start']:.1f}%); training wall time to reach it: SFT {m['wall_s']['sft']:.0f} s, PivotRL "
                     f"{m['wall_s']['pivotrl']:.0f} s (its profiling included).")
    return "\n".join(lines)


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # x = optimiser steps: SFT generates no completions, so "model calls" would put its whole curve at 0
    # (the table gives PivotRL's calls per point)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, algo in zip(axes, METHODS):
        for name, c in s["cells"].items():
            if c["algo"] != algo:
                continue
            ax.plot([p["step"] for p in c["curve"]], [100 * p["dev"] for p in c["curve"]], marker="o",
                    lw=2.5 if name in s["chosen"].values() else 1.0, label=f"lr {c['lr']:g}")
        ax.set_title(f"{algo}: SmolLM2-135M, dev state reward (1 seed)")
        ax.set_xlabel("training step")
        ax.set_ylabel("dev state reward %")
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm_row", help="preset name or YAML path (default smollm_row)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="preset overrides")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of sft,pivotrl (a shard)")
    parser.add_argument("--dev-trajectories", type=int, default=GridSizes.dev_trajectories)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--extra-rates", nargs="*", default=[], metavar="METHOD=R1,R2",
                        help="rates added to a method's grid (the edge check); give them to --report-only too")
    parser.add_argument("--report-only", action="store_true", help="write the report from the cells already done")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    cfg = load_run_config(args.config, args.set)
    extra: dict[str, list[float]] = {}
    for item in args.extra_rates:
        method, _, values = item.partition("=")
        extra[method] = [float(v) for v in values.split(",") if v]
    sizes = GridSizes(dev_trajectories=args.dev_trajectories, extra_rates=extra)
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(METHODS) or set(extra) - set(METHODS):
        parser.error(f"--methods takes {METHODS}, got {methods}")
    t0 = time.perf_counter()
    if args.report_only:
        pipeline.torch_threads(cfg)
        stages = Stages(Path(cfg.output_dir) / (cfg.name or cfg.env.name))
    else:
        stages = run_grid(cfg, sizes, methods)
    s = summarise(cfg, sizes, stages)
    s["report"] = format_report(s)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "results.json").write_text(json.dumps(s, indent=1, default=str))
    (args.results_dir / "rates.md").write_text(s["report"] + "\n")
    if s["cells"]:
        plot(s, args.results_dir / "curves.png")
    print(s["report"])
    log.info("done in %.0f s", time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
