"""Greedy whole-episode evaluation of a policy on task suites, and the validation curve of a training run."""

from __future__ import annotations

from typing import Any

from pivot_algo.config import RunConfig
from pivot_algo.experiments import curves
from pivot_algo.experiments.presets import GridPreset
from pivot_algo.pipeline import close_rollouts, load_model, make_env
from pivot_algo.rollout import Rollouts


def suite_episodes(cfg: RunConfig, policy: Any, trajectories: list[dict], tasks_per_batch: int = 32) -> dict[str, Any]:
    """Greedy whole episodes of `policy` on one suite, its tasks in lock-step batches."""
    from pivot_algo.eval.in_domain import episode_success

    env = make_env(cfg, "pivot", trajectories)
    rollouts = Rollouts(policy, env, episode_env_factory=lambda: make_env(cfg, "episode", trajectories))
    try:
        return episode_success(rollouts, [t["id"] for t in trajectories], max_new_tokens=cfg.eval.max_new_tokens,
                               temperature=0.0, seed=cfg.seed, tasks_per_batch=tasks_per_batch)
    finally:
        close_rollouts(rollouts)


def evaluate(cfg: RunConfig, model: str | Any, suites: dict[str, list[dict]]) -> dict[str, Any]:
    """Greedy whole episodes of a policy (or the one saved at the path `model`) on each held-out suite:
    per-task success."""
    policy = load_model(model) if isinstance(model, str) else model
    out = {}
    for name, trajectories in suites.items():
        ep = suite_episodes(cfg, policy, trajectories)
        out[name] = {"success": ep["success"], "per_task": ep["per_task"], "mean_turns": ep["mean_turns"]}
    return out


def curve_evaluator(preset: GridPreset, cfg: RunConfig, tasks: dict[str, list[dict]]) -> curves.EpisodeEvaluator:
    """The validation curve of a training run (see pivot_algo/experiments/curves.py)."""

    def run(policy: Any, trajectories: list[dict]) -> list[float]:
        return [v or 0.0 for v in suite_episodes(cfg, policy, trajectories)["per_task"]]

    def sample(policy: Any) -> list[tuple[list[int], list[list[int]]]]:
        """`kl_samples` completions of the start policy at every turn of the in-domain validation tasks."""
        env = make_env(cfg, "pivot", tasks["val_in"])
        rollouts = Rollouts(policy, env)
        try:
            groups = rollouts.sample(rollouts.states(rollouts.trajectory_ids()), preset.kl_samples,
                                     max_new_tokens=preset.max_new_tokens, temperature=1.0, seed=cfg.seed)
        finally:
            close_rollouts(rollouts)
        return [(g.prompt_ids, [c.token_ids for c in g.completions]) for g in groups]

    return curves.EpisodeEvaluator(
        suites={"in_domain": tasks["val_in"], "ood_group_a": tasks["val_ood_a"], "ood_tool": tasks["val_tool"]},
        episodes=run, every=preset.eval_every, min_points=preset.min_points, gain=preset.plateau_gain,
        probes={"forward_kl": curves.ForwardKL(sample)} if preset.kl_samples else {})
