"""E2E GRPO: the end-to-end RL baseline (whole episodes, task-success reward).

Each step draws `tasks_per_step` training tasks and runs `group_size` whole episodes per task from
turn 0 in episode mode (the env runs every tool call in its sandbox, and scores the finished episode
with the task's own check). Advantages are group-relative over the episodes of one task and apply to
every token the agent generated in the episode, across all its turns. Groups whose episodes all
scored the same are dropped; masked episodes (infra failures) are excluded. The loss is PivotRL's
clipped token-level surrogate, so the two differ only in where the samples and rewards come from.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.base import (
    Algorithm,
    Batch,
    CollectContext,
    ConfigError,
    TrainGroup,
)
from pivot_algo.algorithms.pivotrl import clipped_policy_loss, group_advantages


@dataclasses.dataclass
class E2EGRPOConfig:
    tasks_per_step: int = 8
    """Training tasks (trajectories, started at turn 0) per optimiser step."""
    group_size: int = 8
    """Whole episodes per task."""
    max_new_tokens: int = 256
    """Longest completion per agent turn (tokens). The env's max_turns bounds the episode."""
    temperature: float = 1.0
    """Sampling temperature (the loss scores with the same one)."""
    scale_std: bool = True
    """Divide group-centred rewards by the group's standard deviation."""
    leave_one_out: bool = False
    """Leave-one-out baseline instead of the group mean."""
    eps_low: float = 0.2
    """Lower clip of the importance ratio."""
    eps_high: float = 0.28
    """Upper clip of the importance ratio."""

    def __post_init__(self) -> None:
        if self.tasks_per_step < 1:
            raise ConfigError(f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 for group-relative advantages, got {self.group_size}")
        if self.leave_one_out and self.group_size < 3:
            raise ConfigError(f"leave_one_out=True needs group_size >= 3, got group_size={self.group_size}")
        if self.max_new_tokens < 1 or not self.temperature > 0:
            raise ConfigError(f"need max_new_tokens >= 1 and temperature > 0, got max_new_tokens={self.max_new_tokens}, "
                              f"temperature={self.temperature}")


@register_algorithm("e2e_grpo")
class E2EGRPO(Algorithm):
    """GRPO over whole episodes (see module docstring)."""

    Config = E2EGRPOConfig
    config: E2EGRPOConfig

    def collect(self, ctx: CollectContext) -> Batch:
        c = self.config
        if not ctx.train_trajectory_ids:
            raise ConfigError("e2e_grpo has no training tasks: the training split is empty")
        k = min(c.tasks_per_step, len(ctx.train_trajectory_ids))
        tasks = [ctx.train_trajectory_ids[i] for i in sorted(ctx.rng.choice(len(ctx.train_trajectory_ids), k, replace=False))]
        per_task = ctx.rollouts.episodes(tasks, c.group_size, max_new_tokens=c.max_new_tokens,
                                         temperature=c.temperature, seed=ctx.seed)
        # Turns that share a prompt (every episode's turn 0 of a task) become one group: prefix computed once.
        # prompt -> (prompt ids, completions, their sampling log-probs, their advantages)
        by_prompt: dict[tuple[int, ...], tuple[list[int], list[list[int]], list[list[float]], list[float]]] = {}
        rewards_all, kept, turns = [], 0, 0
        for episodes in per_task:
            live = [e for e in episodes if not e.masked]
            rewards = np.array([e.reward for e in live], dtype=np.float64)
            rewards_all.extend(rewards.tolist())
            turns += sum(len(e.turns) for e in episodes)
            if len(live) < 2 or rewards.std() == 0:
                continue
            kept += 1
            adv = group_advantages(rewards, scale_std=c.scale_std, leave_one_out=c.leave_one_out and len(live) >= 3)
            for episode, a in zip(live, adv):
                for t in episode.turns:
                    _, completions, old_logprobs, advantages = by_prompt.setdefault(
                        tuple(t.prompt_ids), (t.prompt_ids, [], [], []))
                    completions.append(t.completion.token_ids)
                    old_logprobs.append(t.completion.logprobs)
                    advantages.append(float(a))
        metrics = {"charts/mean_reward": float(np.mean(rewards_all)) if rewards_all else 0.0,
                   "charts/groups_kept_frac": kept / max(len(per_task), 1),
                   "charts/episode_turns_mean": turns / max(sum(len(e) for e in per_task), 1)}
        return Batch([TrainGroup(prompt_ids=prompt, completions=comps, old_logprobs=olds, advantages=advs)
                      for prompt, comps, olds, advs in by_prompt.values()], metrics)

    def loss(self, policy: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return clipped_policy_loss(policy, batch.groups, temperature=self.config.temperature,
                                   eps_low=self.config.eps_low, eps_high=self.config.eps_high)
