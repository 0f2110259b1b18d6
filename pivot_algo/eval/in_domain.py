"""In-domain evaluation on held-out tasks, reported with what it cost.

- `episode_success`: whole episodes from turn 0 in episode mode (the env's own task check), greedy
  by default, bounded by the env's `max_turns`. The headline number.
- `pivot_reward`: mean verifier reward of samples at given states in pivot mode (one turn each):
  a cheaper signal, used on held-out pivot states.
Both return cost figures (rollout turns, generated tokens, sandbox seconds, wall time) measured as
the difference of the rollouts' counters over the call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pivot_algo.rollout import Rollouts, StartState


def _cost_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    keys = ("rollout_turns", "generated_tokens", "sandbox_seconds", "verdicts", "verdict_cache_hits")
    return {**{k: after.get(k, 0) - before.get(k, 0) for k in keys}, "wall_seconds": seconds}


def episode_success(rollouts: Rollouts, trajectory_ids: Sequence[str], *, max_new_tokens: int,
                    temperature: float = 0.0, samples_per_task: int = 1, seed: int = 0,
                    tasks_per_batch: int = 1) -> dict[str, Any]:
    """Success rate of whole episodes on `trajectory_ids` (masked episodes are left out and counted).
    `per_task` holds each task's mean success over its unmasked episodes (None when all were masked),
    for intervals over tasks. `tasks_per_batch` tasks' episodes run in lock-step, one batched generate
    call per turn (far fewer model calls of batch size 1)."""
    before, t0 = rollouts.costs(), time.perf_counter()
    ids = list(trajectory_ids)
    per_task = []
    batch = max(1, tasks_per_batch)
    for i in range(0, len(ids), batch):  # one lock-step batch of tasks at a time
        per_task.extend(rollouts.episodes(ids[i:i + batch], samples_per_task, max_new_tokens=max_new_tokens,
                                          temperature=temperature, seed=seed + i))
    rewards = [e.reward for eps in per_task for e in eps if not e.masked]
    masked = sum(e.masked for eps in per_task for e in eps)
    turns = [len(e.turns) for eps in per_task for e in eps]
    task_means = [float(np.mean([e.reward for e in eps if not e.masked])) if any(not e.masked for e in eps) else None
                  for eps in per_task]
    return {"success": float(np.mean(rewards)) if rewards else 0.0, "episodes": len(rewards), "masked": masked,
            "mean_turns": float(np.mean(turns)) if turns else 0.0, "per_task": task_means,
            "task_ids": ids, "costs": _cost_delta(before, rollouts.costs(), time.perf_counter() - t0)}


def pivot_reward(rollouts: Rollouts, states: Sequence[StartState], *, samples: int, max_new_tokens: int,
                 temperature: float = 1.0, seed: int = 0, batch_states: int = 8) -> dict[str, Any]:
    """Mean verifier reward of `samples` completions at each state (pivot mode)."""
    before, t0 = rollouts.costs(), time.perf_counter()
    rewards: list[float] = []
    for i in range(0, len(states), batch_states):
        chunk = list(states[i:i + batch_states])
        for g in rollouts.sample(chunk, samples, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + i):
            rewards.extend(r for r, m in zip(g.rewards, g.masked) if not m)
    return {"mean_reward": float(np.mean(rewards)) if rewards else 0.0, "samples": len(rewards),
            "states": len(states), "costs": _cost_delta(before, rollouts.costs(), time.perf_counter() - t0)}
