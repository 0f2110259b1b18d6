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
    for intervals over tasks. `tasks_per_batch` > 1 runs that many tasks' episodes in lock-step, one
    batched generate call per turn (same episodes, far fewer model calls of batch size 1)."""
    before, t0 = rollouts.costs(), time.perf_counter()
    ids = list(trajectory_ids)
    if tasks_per_batch <= 1:
        per_task = rollouts.episodes(ids, samples_per_task, max_new_tokens=max_new_tokens, temperature=temperature,
                                     seed=seed)
    else:
        per_task = []
        for i in range(0, len(ids), tasks_per_batch):
            per_task.extend(_lockstep(rollouts, ids[i:i + tasks_per_batch], samples_per_task, max_new_tokens,
                                      temperature, seed + i))
    rewards = [e.reward for eps in per_task for e in eps if not e.masked]
    masked = sum(e.masked for eps in per_task for e in eps)
    turns = [len(e.turns) for eps in per_task for e in eps]
    task_means = [float(np.mean([e.reward for e in eps if not e.masked])) if any(not e.masked for e in eps) else None
                  for eps in per_task]
    return {"success": float(np.mean(rewards)) if rewards else 0.0, "episodes": len(rewards), "masked": masked,
            "mean_turns": float(np.mean(turns)) if turns else 0.0, "per_task": task_means,
            "task_ids": ids, "costs": _cost_delta(before, rollouts.costs(), time.perf_counter() - t0)}


def _repeat(ids: Sequence[str], n: int) -> list[str]:
    return [t for t in ids for _ in range(n)]


def _lockstep(rollouts: Rollouts, ids: Sequence[str], n: int, max_new_tokens: int, temperature: float,
              seed: int) -> list[list[Any]]:
    """n episodes of each task in `ids`, all advanced together: each turn is one generate call over
    every still-running episode. Returns one list of n episodes per task (as `Rollouts.episodes`)."""
    from pivot_algo.rollout import Episode, EpisodeTurn, stable_seed

    slots = _repeat(ids, n)
    envs = rollouts._envs(len(slots))
    episodes = [Episode(tid, []) for tid in slots]
    obs = [env.reset(options={"trajectory": tid, "turn": 0})[0] for env, tid in zip(envs, slots)]
    active = list(range(len(slots)))
    turn = 0
    while active:
        prompts = [rollouts.policy.prompt_ids(obs[j]["messages"], obs[j]["tools"]) for j in active]
        completions = [g[0] for g in rollouts.policy.generate(prompts, 1, max_new_tokens=max_new_tokens,
                                                              temperature=temperature,
                                                              seed=stable_seed(seed, "lockstep", turn))]
        rollouts._count(completions, [rollouts._parse(c.text, obs[j]["tools"]) for j, c in zip(active, completions)])
        still = []
        for j, prompt, comp in zip(active, prompts, completions):
            episodes[j].turns.append(EpisodeTurn(prompt, comp))
            obs[j], reward, terminated, truncated, info = envs[j].step(comp.text)
            if terminated or truncated:
                episodes[j].reward, episodes[j].masked = float(reward), bool(info.get("masked", False))
                episodes[j].finished = bool(terminated)
            else:
                still.append(j)
        active = still
        turn += 1
    return [episodes[i * n:(i + 1) * n] for i in range(len(ids))]


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
