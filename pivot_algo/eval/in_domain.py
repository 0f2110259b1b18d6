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
from typing import Any, Sequence

import numpy as np

from pivot_algo.rollout import Rollouts, StartState


def _cost_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    keys = ("rollout_turns", "generated_tokens", "sandbox_seconds", "verdicts", "verdict_cache_hits")
    return {**{k: after.get(k, 0) - before.get(k, 0) for k in keys}, "wall_seconds": seconds}


def episode_success(rollouts: Rollouts, trajectory_ids: Sequence[str], *, max_new_tokens: int,
                    temperature: float = 0.0, samples_per_task: int = 1, seed: int = 0) -> dict[str, Any]:
    """Success rate of whole episodes on `trajectory_ids` (masked episodes are left out and counted)."""
    before, t0 = rollouts.costs(), time.perf_counter()
    per_task = rollouts.episodes(trajectory_ids, samples_per_task, max_new_tokens=max_new_tokens,
                                 temperature=temperature, seed=seed)
    rewards = [e.reward for eps in per_task for e in eps if not e.masked]
    masked = sum(e.masked for eps in per_task for e in eps)
    turns = [len(e.turns) for eps in per_task for e in eps]
    return {"success": float(np.mean(rewards)) if rewards else 0.0, "episodes": len(rewards), "masked": masked,
            "mean_turns": float(np.mean(turns)) if turns else 0.0,
            "costs": _cost_delta(before, rollouts.costs(), time.perf_counter() - t0)}


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
