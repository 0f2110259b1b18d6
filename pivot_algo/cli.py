"""`pivotrl profile|train|eval|run --config preset.yaml [key=value ...]`.

A preset (see pivot_algo/presets/) names the env, the model, the data split and every stage's
settings; `key=value` overrides any entry by its dotted path (values are parsed as YAML, e.g.
`trainers.pivotrl.steps=4 model=tiny`).

- `profile`: profile pivots of the start policy on the training and held-out splits.
- `train`: train the preset's `algo` from `model` (profiling first when the algorithm needs pivots).
- `eval`: evaluate `model` (a spec or a saved policy directory) on the held-out split.
- `plugins: [path/to/file.py, some.module]` in the config imports algorithm plug-ins first, so
  `algo=` can name an algorithm registered outside the package.
- `run`: the comparison of DESIGN.md: start checkpoint (an SFT warm-up on a disjoint split when the
  preset says the base has no valid actions), pivots profiled once, SFT and PivotRL each trained from
  that start on the same trajectories, optionally PivotRL after SFT, all evaluated; prints a table
  and writes `results.json` and `results.md` beside it in the output directory.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pivot_algo.algorithms import get_algorithm
from pivot_algo.algorithms.base import ConfigError
from pivot_algo.plugins import load_plugins
from pivot_algo.profiler import ProfileConfig, ProfileReport, profile
from pivot_algo.rollout import Rollouts, StartState
from pivot_algo.trainer import TrainConfig, Trainer

log = logging.getLogger("pivotrl")

PRESET_DIR = Path(__file__).parent / "presets"


# ----------------------------------------------------------------------------- config

def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a preset (a path, or the name of a file in pivot_algo/presets) and apply `key=value` overrides."""
    p = Path(path)
    if not p.exists() and (PRESET_DIR / f"{path}.yaml").exists():
        p = PRESET_DIR / f"{path}.yaml"
    if not p.exists():
        raise ConfigError(f"config {str(path)!r} not found; give a YAML path or one of "
                          f"{sorted(x.stem for x in PRESET_DIR.glob('*.yaml'))}")
    cfg = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, value = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return cfg


def _torch_threads(cfg: dict[str, Any]) -> None:
    n = int(cfg.get("torch_threads", 0) or 0)
    if n:
        import torch

        torch.set_num_threads(n)


# ----------------------------------------------------------------------------- env, model, data

def make_env(cfg: dict[str, Any], mode: str, trajectories: Any = None) -> Any:
    """The env named by `env.id`: a registered Gymnasium id, or `module:Class` of a PivotEnv subclass."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401  (registers the envs)

    e = cfg.get("env") or {}
    kwargs = dict(e.get("kwargs") or {})
    if mode == "episode":
        kwargs.update(e.get("episode_kwargs") or {})
    traj = trajectories if trajectories is not None else e.get("trajectories")
    if traj is not None:
        kwargs["trajectories"] = traj
    env_id = e.get("id")
    if not env_id:
        raise ConfigError("the config needs env.id (e.g. PivotTerminal-v0)")
    if ":" in env_id:
        module, cls = env_id.split(":", 1)
        return getattr(importlib.import_module(module), cls)(mode=mode, **kwargs)
    return gym.make(env_id, mode=mode, disable_env_checker=True, **kwargs)


def env_name(cfg: dict[str, Any]) -> str:
    return str(cfg["env"]["id"]).split(":")[-1]


def make_rollouts(cfg: dict[str, Any], policy: Any) -> Rollouts:
    env = make_env(cfg, "pivot")
    trajectories = env.unwrapped.trajectories
    return Rollouts(policy, env, episode_env_factory=lambda: make_env(cfg, "episode", trajectories))


def close_rollouts(rollouts: Rollouts) -> None:
    rollouts.close()
    rollouts.env.close()


def split_ids(ids: Sequence[str], cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Deterministic disjoint split: held-out, warm-up (only when warm-up is enabled), train."""
    d = cfg.get("data") or {}
    order = list(ids)
    np.random.default_rng(int(d.get("split_seed", 0))).shuffle(order)
    if d.get("max_trajectories"):
        order = order[: int(d["max_trajectories"])]
    n = len(order)
    n_held = max(1, round(n * float(d.get("heldout_fraction", 0.25))))
    warm = (cfg.get("warmup") or {}).get("enabled", False)
    n_warm = round(n * float(d.get("warmup_fraction", 0.25))) if warm else 0
    out = {"heldout": order[:n_held], "warmup": order[n_held:n_held + n_warm], "train": order[n_held + n_warm:]}
    if not out["train"] or (warm and not out["warmup"]):
        raise ConfigError(f"split of {n} trajectories leaves train={len(out['train'])}, warmup={len(out['warmup'])}: "
                          "lower data.heldout_fraction / data.warmup_fraction or add trajectories")
    return out


def load_model(spec: str) -> Any:
    from pivot_algo.policy import load_policy

    return load_policy(spec)


# ----------------------------------------------------------------------------- stages

def run_profile(cfg: dict[str, Any], rollouts: Rollouts, states: Sequence[StartState], path: Path) -> ProfileReport:
    pc = ProfileConfig(**{"seed": cfg.get("seed", 0), **(cfg.get("profile") or {})})
    return profile(rollouts, states, pc, path, progress=cfg.get("progress", True))


def run_train(cfg: dict[str, Any], algo: str, model_spec: str, train_ids: list[str], pivots: list[StartState],
              out_dir: Path, run_name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `algo` from `model_spec`; save the final policy in the run directory; return the summary."""
    policy = load_model(model_spec)
    rollouts = make_rollouts(cfg, policy)
    tc = dict((cfg.get("trainers") or {}).get(algo) or {})
    tc.update(overrides or {})
    tc.update(algorithm=algo, seed=cfg.get("seed", 0), output_dir=str(out_dir), run_name=run_name,
              env_name=env_name(cfg))
    tc.setdefault("progress", cfg.get("progress", True))
    try:
        trainer = Trainer(TrainConfig(**tc), policy, rollouts, train_ids,
                          pivots=pivots if get_algorithm(algo).needs_pivots else None,
                          extra_config={"preset": cfg, "start_model": model_spec})
        summary = trainer.train()
        trainer.close()
        policy.save(str(Path(summary["run_dir"]) / "final"))
        summary["policy"] = str(Path(summary["run_dir"]) / "final")
        return summary
    finally:
        close_rollouts(rollouts)


def run_eval(cfg: dict[str, Any], model_spec: str, heldout_ids: list[str], heldout_pivots: list[StartState]) -> dict[str, Any]:
    from pivot_algo.eval.in_domain import episode_success, pivot_reward

    ec = cfg.get("eval") or {}
    policy = load_model(model_spec)
    rollouts = make_rollouts(cfg, policy)
    try:
        ids = heldout_ids[: int(ec["max_tasks"])] if ec.get("max_tasks") else heldout_ids
        ep = episode_success(rollouts, ids, max_new_tokens=int(ec.get("max_new_tokens", 128)),
                             temperature=float(ec.get("temperature", 0.0)),
                             samples_per_task=int(ec.get("samples_per_task", 1)), seed=int(cfg.get("seed", 0)))
        pv = pivot_reward(rollouts, heldout_pivots, samples=int(ec.get("pivot_samples", 8)),
                          max_new_tokens=int(ec.get("max_new_tokens", 128)),
                          temperature=float(ec.get("pivot_temperature", 1.0)), seed=int(cfg.get("seed", 0)))
        return {"episode": ep, "pivot": pv}
    finally:
        close_rollouts(rollouts)


# ----------------------------------------------------------------------------- commands

def _prepare(cfg: dict[str, Any]) -> tuple[dict[str, list[str]], Path]:
    _torch_threads(cfg)
    env = make_env(cfg, "pivot")
    try:
        ids = [t.id for t in env.unwrapped.trajectories]
    finally:
        env.close()
    out = Path(cfg.get("output_dir", "runs")) / cfg.get("name", env_name(cfg))
    out.mkdir(parents=True, exist_ok=True)
    return split_ids(ids, cfg), out


def _profile_start(cfg: dict[str, Any], model_spec: str, splits: dict[str, list[str]], out: Path
                   ) -> tuple[ProfileReport, list[StartState], list[StartState]]:
    """Profile train + held-out states with the start policy; return (report, train pivots, held-out pivots)."""
    policy = load_model(model_spec)
    rollouts = make_rollouts(cfg, policy)
    try:
        report = run_profile(cfg, rollouts, rollouts.states(splits["train"] + splits["heldout"]), out / "profile.jsonl")
    finally:
        close_rollouts(rollouts)
    held = set(splits["heldout"])
    return (report, [p for p in report.pivots if p.trajectory_id not in held],
            [p for p in report.pivots if p.trajectory_id in held])


def _start_model(cfg: dict[str, Any], splits: dict[str, list[str]], out: Path) -> tuple[str, dict[str, Any] | None]:
    """The start checkpoint: the base model, or an SFT warm-up of it on the disjoint warm-up split."""
    base = str(cfg.get("model", "tiny"))
    wc = cfg.get("warmup") or {}
    if not wc.get("enabled"):
        return base, None
    overrides = {k: v for k, v in wc.items() if k != "enabled"}
    summary = run_train(cfg, "sft", base, splits["warmup"], [], out, "warmup_sft", overrides)
    return summary["policy"], summary


def cmd_profile(cfg: dict[str, Any]) -> dict[str, Any]:
    splits, out = _prepare(cfg)
    report, train_p, held_p = _profile_start(cfg, str(cfg.get("model", "tiny")), splits, out)
    summary = {**report.summary(), "train_pivots": len(train_p), "heldout_pivots": len(held_p)}
    print(json.dumps(summary, indent=1))
    return summary


def cmd_train(cfg: dict[str, Any]) -> dict[str, Any]:
    splits, out = _prepare(cfg)
    algo = cfg.get("algo", "pivotrl")
    model = str(cfg.get("model", "tiny"))
    pivots: list[StartState] = []
    if get_algorithm(algo).needs_pivots:
        _, pivots, _ = _profile_start(cfg, model, splits, out)
    summary = run_train(cfg, algo, model, splits["train"], pivots, out, f"{env_name(cfg)}__{algo}__{cfg.get('seed', 0)}__{int(time.time())}")
    print(json.dumps({k: summary[k] for k in ("run_dir", "steps", "costs", "policy")}, indent=1))
    return summary


def cmd_eval(cfg: dict[str, Any]) -> dict[str, Any]:
    splits, out = _prepare(cfg)
    model = str(cfg.get("model", "tiny"))
    _, _, held_p = _profile_start(cfg, model, splits, out)
    result = run_eval(cfg, model, splits["heldout"], held_p)
    print(json.dumps(result, indent=1))
    return result


def _row(name: str, ev: dict[str, Any], costs: dict[str, Any] | None, pivots: int | None) -> dict[str, Any]:
    costs = costs or {}
    return {"model": name, "in_domain_success": ev["episode"]["success"], "mean_pivot_reward": ev["pivot"]["mean_reward"],
            "pivots_kept": pivots, "rollout_turns": costs.get("rollout_turns"),
            "generated_tokens": costs.get("generated_tokens"), "wall_seconds": costs.get("wall_seconds")}


def _add_costs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def format_table(rows: list[dict[str, Any]], notes: list[str]) -> str:
    head = ["model", "in-domain success", "mean pivot reward", "pivots kept", "rollout turns", "generated tokens", "wall time (s)"]
    keys = ["model", "in_domain_success", "mean_pivot_reward", "pivots_kept", "rollout_turns", "generated_tokens", "wall_seconds"]

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) and not float(v).is_integer() else str(int(v)) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def cmd_run(cfg: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    splits, out = _prepare(cfg)
    base = str(cfg.get("model", "tiny"))
    start, warm = _start_model(cfg, splits, out)
    report, train_p, held_p = _profile_start(cfg, start, splits, out)
    notes = [f"splits: train={len(splits['train'])}, held-out={len(splits['heldout'])}, warm-up={len(splits['warmup'])} trajectories",
             (f"profile (start policy): {report.candidate_states} candidate states, {report.pivots_kept} pivots "
              f"({len(train_p)} train / {len(held_p)} held-out), start mean reward {report.mean_reward:.3f}, "
              f"{report.verdicts_per_s:.1f} verdicts/s, cache hit rate {report.cache_hit_rate:.2f}, "
              f"message/tool-call ratio {report.message_ratio:.2f}/{report.tool_call_ratio:.2f}, {report.seconds:.0f} s"),
             ("mean pivot reward: on held-out pivot states of the start policy; costs are training costs "
              "(PivotRL's include nothing of profiling, listed above)")]
    if warm is not None:
        notes.insert(0, f"the base model emits no valid action, so both arms start from an SFT warm-up on a disjoint "
                        f"split of {len(splits['warmup'])} trajectories ({warm['steps']} steps)")
    rows = []
    rows.append(_row(f"base ({base})", run_eval(cfg, base, splits["heldout"], held_p), None, None))
    if warm is not None:
        rows.append(_row("start: SFT warm-up", run_eval(cfg, start, splits["heldout"], held_p), warm["costs"], None))
    sft = run_train(cfg, "sft", start, splits["train"], [], out, "sft")
    rows.append(_row("SFT", run_eval(cfg, sft["policy"], splits["heldout"], held_p), sft["costs"], None))
    rl = run_train(cfg, "pivotrl", start, splits["train"], train_p, out, "pivotrl")
    rows.append(_row("PivotRL", run_eval(cfg, rl["policy"], splits["heldout"], held_p), rl["costs"], len(train_p)))
    if cfg.get("pivotrl_after_sft"):
        _, tp2, _ = _profile_start(cfg, sft["policy"], splits, out / "after_sft")
        if tp2:
            rl2 = run_train(cfg, "pivotrl", sft["policy"], splits["train"], tp2, out, "pivotrl_after_sft")
            rows.append(_row("SFT -> PivotRL", run_eval(cfg, rl2["policy"], splits["heldout"], held_p), rl2["costs"], len(tp2)))
        else:
            notes.append("PivotRL after SFT: skipped, the SFT checkpoint has no pivots on the training split")
    notes.append(f"total wall time {time.perf_counter() - t0:.0f} s")
    table = format_table(rows, notes)
    result = {"rows": rows, "notes": notes, "profile": report.summary(), "config": cfg}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "results.md").write_text(table + "\n")
    print(table)
    return result


COMMANDS = {"profile": cmd_profile, "train": cmd_train, "eval": cmd_eval, "run": cmd_run}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pivotrl", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--config", required=True, help="preset YAML path or name (tiny, smollm_terminal)")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    load_plugins(cfg.get("plugins"))  # outside algorithms register themselves before any lookup
    COMMANDS[args.command](copy.deepcopy(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
