"""The real-model row of issue 10: SmolLM2-135M on the terminal domain, SFT vs PivotRL from one start.

    nohup .venv/bin/python benchmarks/smollm_row.py > /tmp/smollm_row.log 2>&1 &   # resumable
    .venv/bin/python benchmarks/smollm_row.py --report-only     # the table from the stages done so far

Protocol (the paper's Table 1): the base emits no valid action, so both arms start from one
SFT warm-up on a disjoint split; pivots are profiled once with that start on the training split; SFT
and PivotRL each train from it on the same trajectories with the same step budget. Four models --
base, start, SFT, PivotRL -- are each evaluated on
  (a) in-domain: every turn of the held-out trajectories as a pivot-mode state (verifier reward of
      `eval.pivot_samples` samples each, the same sampling seeds for every model), and every held-out
      trajectory as a greedy episode (the task's own check);
  (b) out-of-domain: IFBench, BFCL single-turn, HumanEval: the same items for every model, greedy.
Every number carries its n and a 95% interval: Wilson for proportions; for the state reward a bootstrap
that resamples whole held-out trajectories (the samples of one state are not independent, nor are the
states of one trajectory: they share its files and history); the PivotRL-minus-SFT and each-minus-start
differences are paired (same items / states): a paired bootstrap interval (by trajectory for states), and
for 0/1 outcomes the exact McNemar p-value of the discordant pairs. `--rejudge` recomputes the intervals
of a published results.json from its per-item outcomes.

Resumable: every stage writes its output under the run directory (`runs/smollm_row/stages/*.json`,
checkpoints next to it) and a rerun skips what is there, so a killed run continues where it stopped.
The evaluations run in priority order (`eval_order`), so a run cut short by the clock still holds the
comparisons that matter; `--report-only` writes the table from whatever stages are done.

Sizes, and why (measured here 2026-12-01, torch at 1 thread, SmolLM2 fp32 on CPU, the machine shared
with two other long jobs, load 3.5-5 on 2 cores, so this process got ~40-50% of a core):
- OOD: 100 items per suite (the issue's minimum), max_new_tokens 200 / 96 / 256 (IFBench / BFCL /
  HumanEval), batches of 16 prompts sorted by length (batch 16 was 2.0x the throughput of batch 4 in a
  side-by-side probe; 32 was no faster). Measured at load ~3.7: IFBench 5.0 s/item, BFCL 3.7 s/item;
  HumanEval 8.4 s/item at batch 5. So one model's three suites cost ~25 min here and four models ~100
  min: more than the hour. IFBench runs first for every model because it is the one suite where
  SmolLM2-135M is off the floor (25% on 16 items; BFCL 0/16, HumanEval 0/5), i.e. where post-training
  can visibly damage or keep a skill; BFCL and HumanEval follow while the clock allows.
- Training: the main job's sizes (warm-up 12 steps x 2 conversations, ~32 s a step here; SFT 8 steps
  x 2 conversations; PivotRL 8 steps x 2 pivots x G=8), which were known to leave pivots (9 in 63
  states). Profiling only the 6 training trajectories (~30 states, K=8).
- In-domain: the 6 held-out trajectories: ~30 states x 4 samples at T=0.8 (8 samples do not fit next to
  the OOD suites) and 6 greedy episodes of <= 4 turns.
- One seed: three do not fit (training alone is ~25 minutes a seed here). The intervals are over items
  and states of that one seed; they say nothing about seed-to-seed variation, which for 8-step runs
  on 6 trajectories is likely of the same order as the differences measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pivot_algo import pipeline
from pivot_algo.config import RunConfig, load_run_config
from pivot_algo.experiments.stats import (
    bootstrap_mean,
    cluster_bootstrap,
    mcnemar_exact,
    wilson,
)
from pivot_algo.rollout import StartState, stable_seed

log = logging.getLogger("smollm_row")

RESULTS_DIR = REPO / "benchmarks" / "results" / "smollm_row"
ARMS = ("base", "start", "sft", "pivotrl")
ARM_LABELS = {"base": "base", "start": "start (SFT warm-up)", "sft": "SFT", "pivotrl": "PivotRL"}
# The differences the row is about: PivotRL vs SFT, each arm vs the start both trained from, the warm-up itself.
GRID_STAGE_PREFIX = "rates_"  # stages of the rate grid (benchmarks/smollm_rates.py), kept in the row's folder
COMPARISONS = (("pivotrl", "sft"), ("sft", "start"), ("pivotrl", "start"), ("start", "base"))
OOD_TOKENS = {"ifbench": 200, "humaneval": 256, "bfcl_single": 96}


@dataclasses.dataclass
class RowSizes:
    """What the row adds to the preset: the OOD evaluation and the statistics."""

    ood_limit: int = 100
    ood_suites: tuple[str, ...] = ("ifbench", "bfcl_single", "humaneval")
    ood_max_new_tokens: dict[str, int] = dataclasses.field(default_factory=lambda: dict(OOD_TOKENS))
    ood_batch_size: int = 16
    state_batch: int = 8  # held-out states per batched sampling call
    bootstrap_reps: int = 2000


# ----------------------------------------------------------------------------- statistics

def trajectory_of(state: str) -> str:
    """The held-out trajectory a state belongs to ("terminal-csv_join-7#2" -> "terminal-csv_join-7")."""
    return state.rsplit("#", 1)[0]


def paired(a: dict[str, float], b: dict[str, float], reps: int, seed: int, binary: bool,
           cluster: Callable[[str], str] | None = None) -> dict[str, Any]:
    """a - b on the keys both have: mean difference, paired bootstrap interval, n (and McNemar when 0/1).
    With `cluster`, the bootstrap resamples whole clusters of keys (the states of one trajectory share
    its files and history, so they are not independent draws) and `clusters` counts them."""
    keys = sorted(set(a) & set(b))
    diffs = [a[k] - b[k] for k in keys]
    out: dict[str, Any] = {"n": len(keys), "diff": float(np.mean(diffs)) if diffs else math.nan}
    if cluster is None:
        out["lo"], out["hi"] = bootstrap_mean(diffs, reps, seed)
    else:
        labels = [cluster(k) for k in keys]
        _, out["lo"], out["hi"] = cluster_bootstrap(diffs, labels, reps, seed)
        out["clusters"] = len(set(labels))
    if binary:
        out["mcnemar"] = mcnemar_exact([a[k] > 0.5 for k in keys], [b[k] > 0.5 for k in keys])
    out["inside_noise"] = bool(not keys or out["lo"] <= 0 <= out["hi"])
    return out


def state_intervals(s: dict[str, Any], reps: int) -> None:
    """The state-reward intervals of every arm and comparison in summary `s`, clustered by trajectory
    (from `s["per_item"]`, so a published row can be re-judged without its stage files)."""
    for arm, items in s["per_item"].items():
        means = items.get("_state_means")
        if means and s["arms"][arm].get("state_reward"):
            labels = [trajectory_of(k) for k in means]
            _, lo, hi = cluster_bootstrap(list(means.values()), labels, reps, 1)
            s["arms"][arm]["state_reward"].update(lo=lo, hi=hi, trajectories=len(set(labels)))
    for j, (a, b) in enumerate(COMPARISONS):
        ma, mb = s["per_item"].get(a, {}).get("_state_means"), s["per_item"].get(b, {}).get("_state_means")
        if ma and mb:
            rest = {k: v for k, v in s["differences"][f"{a}-{b}"].items() if k != "state_reward"}
            s["differences"][f"{a}-{b}"] = {"state_reward": paired(ma, mb, reps, 10 + j, binary=False,
                                                                   cluster=trajectory_of), **rest}


# ----------------------------------------------------------------------------- stage cache

class Stages:
    """Stage outputs as JSON files under `root/stages`; a stage that has its file is not run again.

    Not `pivot_algo.experiments.stages.StageCache`: these files are the stage's output plus a "stage"
    block, with no spec, and the row's finished runs were resumed from them, so the format stays."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ran: list[str] = []  # stages computed by this process (the rest were read back)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        p = self.path(name)
        return json.loads(p.read_text()) if p.exists() else None

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        cached = self.get(name)
        if cached is not None:
            log.info("stage %s: cached", name)
            return cached
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        log.info("stage %s: running (load %.2f)", name, load0)
        out = fn()
        out["stage"] = {"wall_s": round(time.perf_counter() - t0, 2), "load_start": load0,
                        "load_end": os.getloadavg()[0], "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1, default=str))
        tmp.rename(self.path(name))  # atomic: a killed run never leaves a half-written stage
        self.ran.append(name)
        log.info("stage %s: done in %.0f s", name, out["stage"]["wall_s"])
        return out


# ----------------------------------------------------------------------------- evaluation stages

def _states(pairs: Sequence[Sequence[Any]]) -> list[StartState]:
    return [StartState(str(t), int(k)) for t, k in pairs]


def eval_states(cfg: RunConfig, model: str, states: Sequence[StartState], sizes: RowSizes) -> dict[str, Any]:
    """Verifier rewards of `eval.pivot_samples` samples at each held-out state (masked samples left out).
    The sampling seed depends on the chunk only, so every model is asked with the same seeds."""
    return sample_states(cfg, pipeline.load_model(model), states, sizes, "row-states")


def sample_states(cfg: RunConfig, policy: Any, states: Sequence[StartState], sizes: RowSizes, seed_tag: str,
                  trajectories: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`eval.pivot_samples` verifier-judged samples of `policy` at each state (of the env's trajectories, or of
    `trajectories`): per-state rewards (masked samples left out), the masked count and the paper's costs.
    Seeds depend on (`seed_tag`, chunk)."""
    ec = cfg.eval
    rollouts = pipeline.make_rollouts(cfg, policy, **({"trajectories": trajectories} if trajectories else {}))
    try:
        before, t0 = rollouts.costs(), time.perf_counter()
        per_state: dict[str, list[float]] = {}
        masked = 0
        for i in range(0, len(states), sizes.state_batch):
            chunk = list(states[i:i + sizes.state_batch])
            for g in rollouts.sample(chunk, ec.pivot_samples, max_new_tokens=ec.max_new_tokens,
                                     temperature=ec.pivot_temperature, seed=stable_seed(cfg.seed, seed_tag, i)):
                per_state[f"{g.state.trajectory_id}#{g.state.turn}"] = [r for r, m in zip(g.rewards, g.masked) if not m]
                masked += sum(g.masked)
        costs = pipeline.paper_costs(_delta(before, rollouts.costs()), wall_seconds=time.perf_counter() - t0)
    finally:
        pipeline.close_rollouts(rollouts)
    return {"per_state": per_state, "masked_samples": masked, "costs": costs}


def eval_episodes(cfg: RunConfig, model: str, ids: Sequence[str]) -> dict[str, Any]:
    """Greedy episodes on the held-out trajectories, all advanced in lock-step (one batched call a turn)."""
    from pivot_algo.eval.in_domain import episode_success

    ec = cfg.eval
    rollouts = pipeline.make_rollouts(cfg, pipeline.load_model(model))
    try:
        ep = episode_success(rollouts, list(ids), max_new_tokens=ec.max_new_tokens, temperature=ec.temperature,
                             samples_per_task=ec.samples_per_task, seed=cfg.seed, tasks_per_batch=max(1, len(ids)))
    finally:
        pipeline.close_rollouts(rollouts)
    per_task = {tid: v for tid, v in zip(ep["task_ids"], ep["per_task"]) if v is not None}
    model_calls = round(ep["mean_turns"] * (ep["episodes"] + ep["masked"]))  # one completion per episode turn
    return {"per_task": per_task, "masked": ep["masked"], "mean_turns": ep["mean_turns"],
            "costs": {**ep["costs"], "model_calls": model_calls}}


def eval_ood(model: str, suite: str, sizes: RowSizes, seed: int) -> dict[str, Any]:
    """One OOD suite, greedy, batched; the items are chosen by (suite, limit, seed), so every model gets
    the same ones. Per-item verdicts are kept for the paired statistics."""
    from pivot_algo.eval.ood import PolicyGenerateFn, run_ood_eval

    policy = pipeline.load_model(model)
    generate = PolicyGenerateFn(policy, max_new_tokens=sizes.ood_max_new_tokens[suite], batch_size=sizes.ood_batch_size)
    report = run_ood_eval(generate, benchmarks=[suite], limit_per_benchmark=sizes.ood_limit, seed=seed, model=model)
    result = report.results[suite].to_dict(include_items=True)
    result["per_item"] = {it["item_id"]: it["correct"] for it in result["items"] if it["correct"] is not None}
    result["max_new_tokens"] = sizes.ood_max_new_tokens[suite]
    return result


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


# ----------------------------------------------------------------------------- the row

def run_row(cfg: RunConfig, sizes: RowSizes, stop_after: str | None = None) -> Stages:
    """Run (or resume) every stage; `stop_after` ends after the named stage (used to test resumption)."""
    t_total = time.perf_counter()
    splits, out = pipeline.prepare(cfg)
    stages = Stages(out)

    def stage(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        result = stages.run(name, fn)
        if stop_after == name:
            raise StopAfter(name)
        return result

    start, prof = shared_stages(cfg, stage, splits, out)

    def train(algo: str) -> Callable[[], dict[str, Any]]:
        def fn() -> dict[str, Any]:
            pivots = _states(prof["train_pivots"])
            if algo == "pivotrl" and not pivots:
                return {"policy": None, "skipped": "profiling kept no pivots on the training split"}
            return pipeline.run_train(cfg, algo, start, splits["train"], pivots, out, algo)
        return fn

    models = {"base": cfg.model, "start": start,
              "sft": stage("train_sft", train("sft"))["policy"],
              "pivotrl": stage("train_pivotrl", train("pivotrl"))["policy"]}
    ready = [a for a in ARMS if models[a]]
    held_states = [StartState(t, k) for t in splits["heldout"] for k in range(_num_turns(cfg, t))]
    evals = {"states": functools.partial(eval_states, cfg, states=held_states, sizes=sizes),
             "episodes": functools.partial(eval_episodes, cfg, ids=splits["heldout"])}
    evals.update({suite: functools.partial(eval_ood, suite=suite, sizes=sizes, seed=cfg.seed) for suite in sizes.ood_suites})
    for kind, arm in eval_order(sizes.ood_suites, ready):
        stage(f"eval_{kind}_{arm}" if kind in ("states", "episodes") else f"ood_{kind}_{arm}",
              functools.partial(evals[kind], model=models[arm]))
    log.info("row finished (%.0f s in this process)", time.perf_counter() - t_total)
    return stages


def shared_stages(cfg: RunConfig, stage: Callable[[str, Callable[[], dict[str, Any]]], dict[str, Any]],
                  splits: dict[str, list[str]], out: Path) -> tuple[str, dict[str, Any]]:
    """The stages the row and its rate grid share: `splits` (a run directory whose cached stages used another
    split is refused), `train_warmup` (the start both arms train from: SFT warm-up on the warm-up split) and
    `profile` (the start's profile of the training split). Returns (start, profile stage)."""
    recorded = stage("splits", lambda: {"splits": splits})["splits"]
    if recorded != splits:
        raise RuntimeError(f"{out}: the cached stages used another split ({recorded}) than this config ({splits}); "
                           "use another run directory (--set name=...) or delete the old one")

    def warmup() -> dict[str, Any]:
        if not cfg.warmup.enabled:
            return {"policy": cfg.model, "costs": {}, "steps": 0}
        return pipeline.run_train(cfg, "sft", cfg.model, splits["warmup"], [], out, "warmup_sft",
                                  section=cfg.warmup.trainer)

    start = stage("train_warmup", warmup)["policy"]

    def profile_stage() -> dict[str, Any]:
        # The training split only: held-out states are evaluated for every model below, and profiling them
        # as well (~5 s a state) does not fit the hour.
        t0 = time.perf_counter()
        rollouts = pipeline.make_rollouts(cfg, pipeline.load_model(start))
        try:
            report = pipeline.run_profile(cfg, rollouts, rollouts.states(splits["train"]), out / "profile.jsonl")
            costs = pipeline.paper_costs(rollouts.costs(), wall_seconds=time.perf_counter() - t0)
        finally:
            pipeline.close_rollouts(rollouts)
        return {"report": report.summary(), "costs": costs,
                "train_pivots": [[p.trajectory_id, p.turn] for p in report.pivots]}

    return start, stage("profile", profile_stage)


def eval_order(suites: Sequence[str], arms: Sequence[str]) -> list[tuple[str, str]]:
    """(evaluation, arm) in priority order, so that a run cut short by the clock has the comparisons that
    matter: in-domain of the compared arms (SFT, PivotRL, their start), then the first OOD suite for every
    arm (IFBench: the one suite where SmolLM2-135M is off the floor), then the base's in-domain, then the
    other suites, one whole suite at a time; within a suite the compared arms come first, the base last."""
    compared = [a for a in ("sft", "pivotrl", "start") if a in arms]
    everyone = compared + (["base"] if "base" in arms else [])
    order = [(kind, a) for kind in ("states", "episodes") for a in compared]
    order += [(suites[0], a) for a in everyone] if suites else []
    order += [(kind, "base") for kind in ("states", "episodes") if "base" in arms]
    order += [(suite, a) for suite in suites[1:] for a in everyone]
    return order


class StopAfter(Exception):
    """Raised by run_row(stop_after=...) after the named stage."""


_TURNS: dict[str, int] = {}


def _num_turns(cfg: RunConfig, trajectory_id: str) -> int:
    if not _TURNS:
        env = pipeline.make_env(cfg, "pivot")
        try:
            _TURNS.update({t.id: t.num_turns for t in env.unwrapped.trajectories})
        finally:
            env.close()
    return _TURNS[trajectory_id]


# ----------------------------------------------------------------------------- the table

def _fmt_p(p: float | None) -> str:
    return "-" if p is None or math.isnan(p) else f"{100 * p:.1f}"


def _interval(lo: float, hi: float) -> str:
    return "-" if math.isnan(lo) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _proportion(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else math.nan, "lo": lo, "hi": hi}


def summarise(cfg: RunConfig, sizes: RowSizes, stages: Stages) -> dict[str, Any]:
    """Every cell of the row from the stage files (a stage not yet run leaves its cells None)."""
    get = stages.get
    prof = get("profile") or {}
    arms: dict[str, dict[str, Any]] = {}
    for arm in ARMS:
        row: dict[str, Any] = {"label": ARM_LABELS[arm]}
        st = get(f"eval_states_{arm}")
        if st:
            per_state = {k: v for k, v in st["per_state"].items() if v}
            means = {k: float(np.mean(v)) for k, v in per_state.items()}
            samples = sum(len(v) for v in per_state.values())
            row["state_reward"] = {"mean": float(np.mean([r for v in per_state.values() for r in v])) if samples else math.nan,
                                   "states": len(per_state), "samples": samples, "masked": st["masked_samples"]}
            row["_state_means"] = means
            row["eval_costs_states"] = st["costs"]
        ep = get(f"eval_episodes_{arm}")
        if ep:
            per_task = {k: float(v) for k, v in ep["per_task"].items()}
            row["episode_success"] = _proportion(int(sum(v > 0.5 for v in per_task.values())), len(per_task))
            row["episode_success"]["masked"] = ep["masked"]
            row["_episodes"] = per_task
            row["eval_costs_episodes"] = ep["costs"]
        for suite in sizes.ood_suites:
            res = get(f"ood_{suite}_{arm}")
            if res:
                items = {k: 1.0 if v else 0.0 for k, v in res["per_item"].items()}
                row[suite] = {**_proportion(int(sum(items.values())), len(items)),
                              "unavailable": res.get("n_unavailable", 0), "infra_failed": res.get("n_infra_failed", 0),
                              "wall_s": res.get("wall_s"), "max_new_tokens": res.get("max_new_tokens")}
                row[f"_{suite}"] = items
        if all(f"_{s}" in row for s in sizes.ood_suites):
            row["ood_mean"] = float(np.mean([row[s]["rate"] for s in sizes.ood_suites]))
        train = {"start": get("train_warmup"), "sft": get("train_sft"), "pivotrl": get("train_pivotrl")}.get(arm)
        costs = dict((train or {}).get("costs") or {})
        if arm == "pivotrl" and train and train.get("policy"):
            costs = pipeline.add_costs(prof.get("costs"), costs)  # PivotRL pays for its profiling
            row["pivots_kept"] = len(prof.get("train_pivots", []))
        evals = [get(f"eval_{k}_{arm}") for k in ("states", "episodes")] + [get(f"ood_{x}_{arm}") for x in sizes.ood_suites]
        row["eval_wall_s"] = round(sum(e["stage"]["wall_s"] for e in evals if e), 1)
        row["train_steps"] = (train or {}).get("steps")  # trainer steps; optimiser steps can be fewer (skipped updates)
        if train and train.get("skipped"):
            row["note"] = train["skipped"]
        row["train_costs"] = {k: costs.get(k) for k in (*pipeline.COST_COLUMNS, "trained_tokens")} if costs else {}
        arms[arm] = row

    diffs: dict[str, dict[str, Any]] = {}
    for a, b in COMPARISONS:
        ra, rb = arms[a], arms[b]
        d: dict[str, Any] = {}
        seed = 10
        if "_episodes" in ra and "_episodes" in rb:
            d["episode_success"] = paired(ra["_episodes"], rb["_episodes"], sizes.bootstrap_reps, seed + 1, binary=True)
        for j, suite in enumerate(sizes.ood_suites):
            if f"_{suite}" in ra and f"_{suite}" in rb:
                d[suite] = paired(ra[f"_{suite}"], rb[f"_{suite}"], sizes.bootstrap_reps, seed + 2 + j, binary=True)
        if all(s in d for s in sizes.ood_suites):
            d["ood_mean"] = _paired_ood_mean(ra, rb, sizes)
        diffs[f"{a}-{b}"] = d
    # the row's own stages (the rate grid, benchmarks/smollm_rates.py, keeps its cells in the same folder)
    names = [p.stem for p in sorted(stages.dir.glob("*.json")) if not p.stem.startswith(GRID_STAGE_PREFIX)]
    loads = [s["stage"]["load_start"] for s in (get(n) for n in names) if s]
    walls = {n: (get(n) or {}).get("stage", {}).get("wall_s") for n in names}
    return {"arms": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in arms.items()},
            "per_item": {k: {kk: vv for kk, vv in v.items() if kk.startswith("_")} for k, v in arms.items()},
            "differences": diffs, "profile": prof.get("report"),
            "splits": (get("splits") or {}).get("splits"),
            "sizes": dataclasses.asdict(sizes), "config": cfg.raw, "stage_wall_s": walls,
            "total_stage_wall_s": round(sum(v for v in walls.values() if v), 1),
            "load": {"stage_starts_min": min(loads, default=math.nan), "stage_starts_max": max(loads, default=math.nan),
                     "stage_starts_mean": float(np.mean(loads)) if loads else math.nan},
            "torch_threads": cfg.torch_threads, "seeds": [cfg.seed]}


def _paired_ood_mean(ra: dict[str, Any], rb: dict[str, Any], sizes: RowSizes) -> dict[str, Any]:
    """Difference of the unweighted mean over the suites; the bootstrap resamples items within each suite."""
    rng = np.random.default_rng(99)
    per_suite = []
    for suite in sizes.ood_suites:
        keys = sorted(set(ra[f"_{suite}"]) & set(rb[f"_{suite}"]))
        per_suite.append(np.array([ra[f"_{suite}"][k] - rb[f"_{suite}"][k] for k in keys]))
    point = float(np.mean([x.mean() if x.size else math.nan for x in per_suite]))
    boots = np.zeros(sizes.bootstrap_reps)
    for x in per_suite:
        if x.size:
            boots += x[rng.integers(0, x.size, size=(sizes.bootstrap_reps, x.size))].mean(axis=1)
    boots /= len(per_suite)
    lo, hi = float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))
    return {"diff": point, "lo": lo, "hi": hi, "n": [int(x.size) for x in per_suite], "inside_noise": lo <= 0 <= hi}


def format_table(s: dict[str, Any], sizes: RowSizes) -> str:
    suites = sizes.ood_suites
    head = (["model", "held-out state reward % [95% CI] (states x samples)", "episode success k/n [Wilson]"] + [f"{x} % k/n [Wilson]" for x in suites]
            + ["OOD mean %", "train steps", "optimiser steps", "model calls (rollout turns)", "generated tokens", "trained tokens",
               "train wall s", "eval wall s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in ARMS:
        r = s["arms"][arm]
        cells = [r["label"]]
        sr = r.get("state_reward")
        cells.append(f"{_fmt_p(sr['mean'])} {_interval(sr['lo'], sr['hi'])} ({sr['states']} x "
                     f"{sr['samples'] // max(sr['states'], 1)})" if sr else "not run")
        es = r.get("episode_success")
        cells.append(f"{es['k']}/{es['n']} {_interval(es['lo'], es['hi'])}" if es else "not run")
        for suite in suites:
            x = r.get(suite)
            cells.append(f"{_fmt_p(x['rate'])} ({x['k']}/{x['n']}) {_interval(x['lo'], x['hi'])}" if x else "not run")
        cells.append(_fmt_p(r.get("ood_mean")))
        c = r.get("train_costs") or {}
        cells.append("-" if r.get("train_steps") is None else str(r["train_steps"]))
        for key in ("optimizer_steps", "rollout_turns", "generated_tokens", "trained_tokens", "wall_seconds"):
            v = c.get(key)
            cells.append("-" if v is None else f"{v:.0f}")
        cells.append(f"{r['eval_wall_s']:.0f}")
        if r.get("note"):
            cells[1] = f"not trained: {r['note']}"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", ("Paired differences (same states / items; percentage points, 95% paired bootstrap interval, "
                   "state reward resampled by whole held-out trajectory; McNemar: discordant pairs a-only/b-only "
                   "and exact p):"), "",
              "| comparison | metric | difference [95% CI] | n | McNemar | inside the noise? |", "|---|---|---|---|---|---|"]
    for name, d in s["differences"].items():
        a, b = name.split("-")
        for metric, v in d.items():
            mc = v.get("mcnemar")
            mct = f"{mc['a_only']}/{mc['b_only']}, p={mc['p']:.3f}" if mc else "-"
            lines.append(f"| {ARM_LABELS[a]} - {ARM_LABELS[b]} | {metric} | {100 * v['diff']:+.1f} "
                         f"{_interval(v['lo'], v['hi'])} | {v['n']} | {mct} | {'yes' if v['inside_noise'] else 'no'} |")
    return "\n".join(lines)


def notes(s: dict[str, Any], sizes: RowSizes) -> list[str]:
    prof = s.get("profile") or {}
    sp = s.get("splits") or {}
    out = [(f"model {s['config'].get('model')}, env {s['config'].get('env', {}).get('id')}, seeds {s['seeds']} "
            f"(one seed: the intervals are over states / items, not over seeds), torch threads {s['torch_threads']}"),
           (f"splits: warm-up {len(sp.get('warmup', []))}, train {len(sp.get('train', []))}, "
            f"held-out {len(sp.get('heldout', []))} trajectories (disjoint)")]
    if prof:
        out.append(f"profile of the start (training split): {prof.get('candidate_states')} states, "
                   f"{prof.get('pivots_kept')} pivots, mean reward "
                   f"{prof.get('mean_reward', 0):.3f}, tool-call ratio {prof.get('tool_call_ratio', 0):.2f}")
    out.append(f"OOD: {sizes.ood_limit} items per suite (same items for every model), greedy, max_new_tokens "
               + ", ".join(f"{k} {sizes.ood_max_new_tokens[k]}" for k in sizes.ood_suites)
               + f", batches of {sizes.ood_batch_size}")
    out.append("costs: PivotRL's include its profiling; 'model calls' are completions generated (the paper's rollout "
               "turns); the start's are the warm-up's")
    ld = s["load"]
    out.append(f"load average (1 min) at stage starts: min {ld['stage_starts_min']:.2f}, mean "
               f"{ld['stage_starts_mean']:.2f}, max {ld['stage_starts_max']:.2f}; sum of stage wall times "
               f"{s['total_stage_wall_s']:.0f} s")
    return out


def write_results(cfg: RunConfig, sizes: RowSizes, stages: Stages, results_dir: Path,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    s = summarise(cfg, sizes, stages)
    s.update(extra or {})
    return write_summary(s, sizes, results_dir)


def write_summary(s: dict[str, Any], sizes: RowSizes, results_dir: Path) -> dict[str, Any]:
    state_intervals(s, sizes.bootstrap_reps)
    table = format_table(s, sizes)
    s["table"] = table
    s["notes"] = notes(s, sizes)
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "results.json").write_text(json.dumps(s, indent=1, default=str))
    (results_dir / "table.md").write_text(table + "\n\n" + "\n".join(f"- {n}" for n in s["notes"]) + "\n")
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="smollm_row", help="preset name or YAML path (default smollm_row)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="preset overrides")
    parser.add_argument("--ood-limit", type=int, default=RowSizes.ood_limit, help="items per OOD suite")
    parser.add_argument("--ood-suites", nargs="+", default=list(RowSizes.ood_suites))
    parser.add_argument("--ood-tokens", nargs="*", default=[], metavar="SUITE=N", help="max_new_tokens per suite")
    parser.add_argument("--ood-batch-size", type=int, default=RowSizes.ood_batch_size)
    parser.add_argument("--bootstrap-reps", type=int, default=RowSizes.bootstrap_reps)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--stop-after", default=None, help="end after this stage (resumption tests)")
    parser.add_argument("--report-only", action="store_true", help="write the table from the stages already done")
    parser.add_argument("--rejudge", action="store_true",
                        help="recompute the intervals of <results-dir>/results.json from its per-item outcomes (no stage files needed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    cfg = load_run_config(args.config, args.set)
    tokens = dict(OOD_TOKENS)
    for item in args.ood_tokens:
        suite, _, n = item.partition("=")
        tokens[suite] = int(n)
    sizes = RowSizes(ood_limit=args.ood_limit, ood_suites=tuple(args.ood_suites), ood_max_new_tokens=tokens,
                     ood_batch_size=args.ood_batch_size, bootstrap_reps=args.bootstrap_reps)
    unknown = [s for s in sizes.ood_suites if s not in tokens]
    if unknown:
        parser.error(f"no max_new_tokens for OOD suite(s) {unknown}: give --ood-tokens SUITE=N")
    if args.rejudge:
        s = json.loads((args.results_dir / "results.json").read_text())
        stored: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s["sizes"].items()}
        s = write_summary(s, RowSizes(**stored), args.results_dir)
        print(s["table"])
        return 0
    if args.report_only:
        pipeline.torch_threads(cfg)
        stages = Stages(Path(cfg.output_dir) / (cfg.name or cfg.env.name))
    else:
        try:
            stages = run_row(cfg, sizes, stop_after=args.stop_after)
        except StopAfter as stop:
            log.info("stopped after stage %s (--stop-after); rerun to continue", stop)
            return 0
    s = write_results(cfg, sizes, stages, args.results_dir, {"stages_run_by_last_process": stages.ran})
    print(s["table"])
    print("\n".join(f"- {n}" for n in s["notes"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
