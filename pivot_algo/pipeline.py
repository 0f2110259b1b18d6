"""The run pipeline behind `pivotrl profile|train|eval|run`: envs, splits, profiling, training, evaluation.

Every stage takes a typed `RunConfig` (pivot_algo/config.py). `run` is the SFT-vs-PivotRL comparison:
the start checkpoint (an SFT warm-up on a disjoint split when the preset says the base has no valid
actions), pivots profiled once with it, SFT and PivotRL each trained from that start on the same
trajectories, optionally PivotRL after SFT, all evaluated on held-out tasks; it prints a table and
writes `results.json` / `results.md`. A profile that keeps no pivots is a result, not a crash: the
PivotRL row says so and the run ends normally.

Costs are counted as the paper counts them (see `COST_COLUMNS`): rollout turns are model calls
generated (PivotRL's include its profiling), kept apart from sandbox executions (every action an env
ran, verification and replay included).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pivot_algo.algorithms import get_algorithm
from pivot_algo.algorithms.base import ConfigError
from pivot_algo.config import RunConfig
from pivot_algo.profiler import ProfileConfig, ProfileReport, profile
from pivot_algo.rollout import Rollouts, StartState

log = logging.getLogger("pivotrl")

# What every method's cost is reported as (the paper's Table 1 / efficiency figure columns).
COST_COLUMNS = ("rollout_turns", "sandbox_executions", "generated_tokens", "sandbox_seconds", "wall_seconds",
                "optimizer_steps")


class NoPivotsError(ConfigError):
    """Profiling kept no pivot state, so a pivot algorithm has nothing to train on."""


def as_run_config(cfg: RunConfig | dict[str, Any]) -> RunConfig:
    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)


def torch_threads(cfg: RunConfig) -> None:
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)


# ----------------------------------------------------------------------------- env, model, data

def make_env(cfg: RunConfig, mode: str, trajectories: Any = None, **extra_kwargs: Any) -> Any:
    """The env named by `env.id` (`pivot_envs.registration.make_env`: a registered Gymnasium id, or
    `module:Class` of a PivotEnv subclass). `extra_kwargs` override the preset's (e.g. `verifier="paper"`
    for one arm of a comparison)."""
    from pivot_envs.registration import make_env as make_env_by_id

    kwargs = dict(cfg.env.kwargs)
    if mode == "episode":
        kwargs.update(cfg.env.episode_kwargs)
    kwargs.update(extra_kwargs)
    traj = trajectories if trajectories is not None else cfg.env.trajectories
    if traj is not None:
        kwargs["trajectories"] = traj
    return make_env_by_id(cfg.env.id, mode=mode, **kwargs)


def make_rollouts(cfg: RunConfig, policy: Any, **env_kwargs: Any) -> Rollouts:
    if hasattr(policy, "use_sampler"):
        policy.use_sampler(cfg.sampler)
    env = make_env(cfg, "pivot", **env_kwargs)
    trajectories = env.unwrapped.trajectories
    return Rollouts(policy, env, episode_env_factory=lambda: make_env(cfg, "episode", trajectories))


def close_rollouts(rollouts: Rollouts) -> None:
    rollouts.close()
    rollouts.env.close()


def split_ids(ids: Sequence[str], cfg: RunConfig) -> dict[str, list[str]]:
    """Deterministic disjoint split: held-out, warm-up (only when warm-up is enabled), train."""
    d = cfg.data
    order = list(ids)
    np.random.default_rng(d.split_seed).shuffle(order)
    if d.max_trajectories:
        order = order[: d.max_trajectories]
    n = len(order)
    n_held = max(1, round(n * d.heldout_fraction))
    warm = cfg.warmup.enabled
    n_warm = round(n * d.warmup_fraction) if warm else 0
    out = {"heldout": order[:n_held], "warmup": order[n_held:n_held + n_warm], "train": order[n_held + n_warm:]}
    if not out["train"] or (warm and not out["warmup"]):
        raise ConfigError(f"split of {n} trajectories leaves train={len(out['train'])}, warmup={len(out['warmup'])}: "
                          "lower data.heldout_fraction / data.warmup_fraction or add trajectories")
    return out


def load_model(spec: str) -> Any:
    from pivot_algo.policy import load_policy

    return load_policy(spec)


# ----------------------------------------------------------------------------- costs

def paper_costs(rollout_costs: dict[str, float], *, wall_seconds: float, optimizer_steps: int = 0) -> dict[str, float]:
    """The COST_COLUMNS of a `Rollouts.costs()` reading: model calls as rollout turns, sandbox
    executions (the envs' own `rollout_turns` meter) kept as their own column."""
    return {"rollout_turns": rollout_costs.get("samples", 0),
            "sandbox_executions": rollout_costs.get("rollout_turns", 0),
            "generated_tokens": rollout_costs.get("generated_tokens", 0),
            "sandbox_seconds": rollout_costs.get("sandbox_seconds", 0.0),
            "wall_seconds": wall_seconds, "optimizer_steps": optimizer_steps}


def add_costs(*parts: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in parts:
        for k, v in (part or {}).items():
            if isinstance(v, (int, float)):
                out[k] = out.get(k, 0) + v
    return out


# ----------------------------------------------------------------------------- stages

@dataclasses.dataclass
class ProfileResult:
    """Pivots of one policy on some states, and what finding them cost (COST_COLUMNS)."""

    report: ProfileReport
    train_pivots: list[StartState]
    heldout_pivots: list[StartState]
    costs: dict[str, float]


def run_profile(cfg: RunConfig, rollouts: Rollouts, states: Sequence[StartState], path: Path,
                config: ProfileConfig | None = None, env_kwargs: dict[str, Any] | None = None) -> ProfileReport:
    """Profile in this process, or (`ray.num_actors > 0`) with the verdicts judged on a Ray pool of
    actors that each build the same env (`env.kwargs` + `env_kwargs`, the same trajectories)."""
    config = config or cfg.profile
    if not cfg.ray.num_actors:
        return profile(rollouts, states, config, path, progress=cfg.progress)
    from pivot_algo.distributed import PolicyActions, VerifierPool, profile_with_pool

    trajectories = rollouts.base_env.trajectories
    kwargs = {**cfg.env.kwargs, **(env_kwargs or {}), "trajectories": [t.to_dict() for t in trajectories]}
    with VerifierPool(cfg.env.id, kwargs, num_actors=cfg.ray.num_actors, address=cfg.ray.address,
                      num_cpus_per_actor=cfg.ray.num_cpus_per_actor) as pool:
        return profile_with_pool(pool, states, config, path, actions=PolicyActions(rollouts.policy, trajectories, config),
                                 parser=getattr(rollouts.base_env, "parser", "hermes"))


def weights_digest(model_spec: str) -> str | None:
    """A hash of a saved policy's weights and config (None for a named model such as "tiny"): a
    warm-up retrained into the same folder is another model."""
    folder = Path(model_spec)
    if not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".bin") or f.name == "config.json":
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def claim_profile_file(path: Path, identity: dict[str, Any]) -> None:
    """A profile file resumes: states already in it are not sampled again. That is right for the same
    model and settings and wrong for any other (`pivotrl profile` of the base, then `pivotrl run` from
    a warm-up, write the same `profile.jsonl`). So the file's maker is recorded beside it
    (`profile.identity.json`), and a file made by another model or setup is moved aside
    (`profile.stale-<time>.jsonl`) instead of being resumed."""
    sidecar = path.with_name(path.stem + ".identity.json")
    mine = json.loads(json.dumps(identity, default=str))
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text()) != mine:
        stale = path.with_name(f"{path.stem}.stale-{int(time.time())}.jsonl")
        path.rename(stale)
        log.warning("%s was profiled by another model or setup: moved to %s, profiling afresh", path, stale)
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(mine, indent=1, sort_keys=True))


def profile_start(cfg: RunConfig, model_spec: str, splits: dict[str, list[str]], path: Path,
                  **env_kwargs: Any) -> ProfileResult:
    """Profile train + held-out states with `model_spec`; `env_kwargs` select e.g. another verifier."""
    t0 = time.perf_counter()
    claim_profile_file(path, {"model": model_spec, "weights": weights_digest(model_spec),
                              "profile": dataclasses.asdict(cfg.profile), "env": cfg.env.id,
                              "env_kwargs": {**cfg.env.kwargs, **env_kwargs}})
    policy = load_model(model_spec)
    rollouts = make_rollouts(cfg, policy, **env_kwargs)
    try:
        report = run_profile(cfg, rollouts, rollouts.states(splits["train"] + splits["heldout"]), path,
                             env_kwargs=env_kwargs)
        costs = paper_costs(rollouts.costs(), wall_seconds=time.perf_counter() - t0)
    finally:
        close_rollouts(rollouts)
    held = set(splits["heldout"])
    return ProfileResult(report, [p for p in report.pivots if p.trajectory_id not in held],
                         [p for p in report.pivots if p.trajectory_id in held], costs)


def run_train(cfg: RunConfig, algo: str, model_spec: str, train_ids: list[str], pivots: list[StartState],
              out_dir: Path, run_name: str, overrides: dict[str, Any] | None = None,
              section: Any = None, env_kwargs: dict[str, Any] | None = None, evaluator: Any = None) -> dict[str, Any]:
    """Train `algo` from `model_spec`; save the final policy in the run directory; return the summary
    (its `costs` hold the trainer's counters plus the COST_COLUMNS; `curve` the periodic evaluations
    when an `evaluator` (trainer.Evaluator) is given). `section` replaces the preset's
    `trainers.<algo>` (the warm-up passes its own); `overrides` are TrainConfig fields on top."""
    from pivot_algo.trainer import Trainer

    policy = load_model(model_spec)
    rollouts = make_rollouts(cfg, policy, **(env_kwargs or {}))
    section = section or cfg.trainer(algo)
    values = {"progress": cfg.progress, **section.values, **(overrides or {})}
    tc = dataclasses.replace(section, values=values).train_config(
        seed=cfg.seed, output_dir=str(out_dir), run_name=run_name, env_name=cfg.env.name)
    needs_pivots = get_algorithm(algo).needs_pivots
    if needs_pivots and not pivots:
        close_rollouts(rollouts)
        raise NoPivotsError(f"{algo} trains on pivots, and profiling kept none: every profiled state's samples "
                            f"agreed (or their mean was >= lambda_diff={cfg.profile.lambda_diff}). Warm the start "
                            "policy up (warmup.enabled=true), raise profile.k, or raise profile.lambda_diff")
    try:
        def reprofile_now() -> list[StartState]:
            reprofile_now.calls += 1  # type: ignore[attr-defined]
            path = out_dir / run_name / f"reprofile_{reprofile_now.calls}.jsonl"  # type: ignore[attr-defined]
            return run_profile(cfg, rollouts, rollouts.states(train_ids), path).pivots

        reprofile_now.calls = 0  # type: ignore[attr-defined]
        trainer = Trainer(tc, policy, rollouts, train_ids, pivots=pivots if needs_pivots else None,
                          reprofile=reprofile_now if needs_pivots else None,
                          extra_config={"preset": cfg.raw, "start_model": model_spec}, evaluator=evaluator)
        summary = trainer.train()
        trainer.close()
        policy.save(str(Path(summary["run_dir"]) / "final"))
        summary["policy"] = str(Path(summary["run_dir"]) / "final")
        return summary
    finally:
        close_rollouts(rollouts)


def run_eval(cfg: RunConfig, model_spec: str, heldout_ids: list[str], heldout_pivots: list[StartState]
             ) -> dict[str, Any]:
    from pivot_algo.eval.in_domain import episode_success, pivot_reward

    ec = cfg.eval
    policy = load_model(model_spec)
    rollouts = make_rollouts(cfg, policy)
    try:
        ids = heldout_ids[: ec.max_tasks] if ec.max_tasks else heldout_ids
        ep = episode_success(rollouts, ids, max_new_tokens=ec.max_new_tokens, temperature=ec.temperature,
                             samples_per_task=ec.samples_per_task, seed=cfg.seed)
        pv = pivot_reward(rollouts, heldout_pivots, samples=ec.pivot_samples, max_new_tokens=ec.max_new_tokens,
                          temperature=ec.pivot_temperature, seed=cfg.seed)
        return {"episode": ep, "pivot": pv}
    finally:
        close_rollouts(rollouts)


def prepare(cfg: RunConfig) -> tuple[dict[str, list[str]], Path]:
    torch_threads(cfg)
    env = make_env(cfg, "pivot")
    try:
        ids = [t.id for t in env.unwrapped.trajectories]
    finally:
        env.close()
    out = Path(cfg.output_dir) / (cfg.name or cfg.env.name)
    out.mkdir(parents=True, exist_ok=True)
    return split_ids(ids, cfg), out


def start_model(cfg: RunConfig, splits: dict[str, list[str]], out: Path) -> tuple[str, dict[str, Any] | None]:
    """The start checkpoint: the base model, or an SFT warm-up of it on the disjoint warm-up split."""
    if not cfg.warmup.enabled:
        return cfg.model, None
    summary = run_train(cfg, "sft", cfg.model, splits["warmup"], [], out, "warmup_sft", section=cfg.warmup.trainer)
    return summary["policy"], summary


# ----------------------------------------------------------------------------- commands

def cmd_profile(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    cfg = as_run_config(cfg)
    splits, out = prepare(cfg)
    prof = profile_start(cfg, cfg.model, splits, out / "profile.jsonl")
    summary = {**prof.report.summary(), "train_pivots": len(prof.train_pivots),
               "heldout_pivots": len(prof.heldout_pivots), "costs": prof.costs}
    print(json.dumps(summary, indent=1))
    print(pivot_share_line(prof), file=sys.stderr)  # stdout stays one JSON document
    return summary


def pivot_share_line(prof: ProfileResult) -> str:
    r = prof.report
    return (f"pivots: {r.pivots_kept} of {r.candidate_states} candidate states ({100 * r.pivot_share:.1f}%; "
            f"{len(prof.train_pivots)} train / {len(prof.heldout_pivots)} held-out), start mean reward {r.mean_reward:.3f}")


def cmd_train(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    cfg = as_run_config(cfg)
    splits, out = prepare(cfg)
    pivots: list[StartState] = []
    if get_algorithm(cfg.algo).needs_pivots:
        prof = profile_start(cfg, cfg.model, splits, out / "profile.jsonl")
        print(pivot_share_line(prof), file=sys.stderr)
        pivots = prof.train_pivots
    summary = run_train(cfg, cfg.algo, cfg.model, splits["train"], pivots, out,
                        f"{cfg.env.name}__{cfg.algo}__{cfg.seed}__{int(time.time())}")
    print(json.dumps({k: summary[k] for k in ("run_dir", "steps", "costs", "policy")}, indent=1))
    return summary


def cmd_eval(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    cfg = as_run_config(cfg)
    splits, out = prepare(cfg)
    prof = profile_start(cfg, cfg.model, splits, out / "profile.jsonl")
    result = run_eval(cfg, cfg.model, splits["heldout"], prof.heldout_pivots)
    print(json.dumps(result, indent=1))
    return result


TABLE_COLUMNS = [("model", "model"), ("in_domain_success", "in-domain success"),
                 ("mean_pivot_reward", "mean pivot reward"), ("pivots_kept", "pivots kept"),
                 ("rollout_turns", "rollout turns (model calls)"), ("sandbox_executions", "sandbox executions"),
                 ("generated_tokens", "generated tokens"), ("optimizer_steps", "optimiser steps"),
                 ("wall_seconds", "wall time (s)")]


def table_row(name: str, ev: dict[str, Any] | None, costs: dict[str, Any] | None, pivots: int | None,
              note: str | None = None) -> dict[str, Any]:
    """One row of the run table; `ev=None` is a method that was not trained (`note` says why)."""
    costs = costs or {}
    row: dict[str, Any] = {"model": name, "pivots_kept": pivots, "note": note,
                           "in_domain_success": ev["episode"]["success"] if ev else None,
                           "mean_pivot_reward": ev["pivot"]["mean_reward"] if ev else None}
    row.update({k: costs.get(k) for k in COST_COLUMNS})
    return row


def format_table(rows: list[dict[str, Any]], notes: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return str(int(v)) if v.is_integer() else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(h for _, h in TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in rows:
        cells = [fmt(r[k]) for k, _ in TABLE_COLUMNS]
        if r.get("note"):
            cells[1] = r["note"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def cmd_run(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    cfg = as_run_config(cfg)
    t0 = time.perf_counter()
    splits, out = prepare(cfg)
    start, warm = start_model(cfg, splits, out)
    prof = profile_start(cfg, start, splits, out / "profile.jsonl")
    print(pivot_share_line(prof))
    report, train_p, held_p = prof.report, prof.train_pivots, prof.heldout_pivots
    notes = [(f"splits: train={len(splits['train'])}, held-out={len(splits['heldout'])}, "
              f"warm-up={len(splits['warmup'])} trajectories"),
             (f"profile (start policy): {report.candidate_states} candidate states, {report.pivots_kept} pivots "
              f"(share {100 * report.pivot_share:.1f}%; {len(train_p)} train / {len(held_p)} held-out), start mean reward {report.mean_reward:.3f}, "
              f"{report.verdicts_per_s:.1f} verdicts/s, cache hit rate {report.cache_hit_rate:.2f}, "
              f"message/tool-call ratio {report.message_ratio:.2f}/{report.tool_call_ratio:.2f}, {report.seconds:.0f} s"),
             ("mean pivot reward: on held-out pivot states of the start policy; rollout turns are model calls "
              "generated (PivotRL's include its profiling), sandbox executions every action an env ran")]
    if warm is not None:
        notes.insert(0, f"the base model emits no valid action, so both arms start from an SFT warm-up on a disjoint "
                        f"split of {len(splits['warmup'])} trajectories ({warm['steps']} steps)")
    rows = [table_row(f"base ({cfg.model})", run_eval(cfg, cfg.model, splits["heldout"], held_p), None, None)]
    if warm is not None:
        rows.append(table_row("start: SFT warm-up", run_eval(cfg, start, splits["heldout"], held_p),
                              warm["costs"], None))
    sft = run_train(cfg, "sft", start, splits["train"], [], out, "sft")
    rows.append(table_row("SFT", run_eval(cfg, sft["policy"], splits["heldout"], held_p), sft["costs"], None))
    if train_p:
        rl = run_train(cfg, "pivotrl", start, splits["train"], train_p, out, "pivotrl")
        rows.append(table_row("PivotRL", run_eval(cfg, rl["policy"], splits["heldout"], held_p),
                              add_costs(prof.costs, rl["costs"]), len(train_p)))
    else:
        msg = (f"profiling found no pivots on the training split: of {report.candidate_states} candidate states "
               f"{report.pivots_kept} had mixed outcomes under the start policy ({len(held_p)} of them held out; "
               f"start mean reward {report.mean_reward:.3f}), so PivotRL had nothing to train on and was not run")
        notes.append(msg + ". Warm the start up (warmup.*), raise profile.k, or raise profile.lambda_diff")
        rows.append(table_row("PivotRL", None, prof.costs, 0, note="not run: no pivots"))
        print(f"pivotrl run: {msg}")
    if cfg.pivotrl_after_sft:
        prof2 = profile_start(cfg, sft["policy"], splits, out / "after_sft" / "profile.jsonl")
        if prof2.train_pivots:
            rl2 = run_train(cfg, "pivotrl", sft["policy"], splits["train"], prof2.train_pivots, out,
                            "pivotrl_after_sft")
            rows.append(table_row("SFT -> PivotRL", run_eval(cfg, rl2["policy"], splits["heldout"], held_p),
                                  add_costs(prof2.costs, rl2["costs"]), len(prof2.train_pivots)))
        else:
            notes.append("PivotRL after SFT: skipped, the SFT checkpoint has no pivots on the training split")
    notes.append(f"total wall time {time.perf_counter() - t0:.0f} s")
    table = format_table(rows, notes)
    result = {"rows": rows, "notes": notes, "profile": report.summary(), "no_pivots": not train_p,
              "config": cfg.raw}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "results.md").write_text(table + "\n")
    print(table)
    return result


COMMANDS = {"profile": cmd_profile, "train": cmd_train, "eval": cmd_eval, "run": cmd_run}
