"""Real conversations for the policy benchmarks: turns of the built-in terminal suite (train split).

Profiling, PivotRL sampling and evaluation all visit the turns of a trajectory in order; these
helpers return such states, with their prompt ids under a given policy and the demonstration's
assistant turn (its real tokens), so the benchmarks measure on conversations users run, not on
random ids.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pivot_envs.domains.terminal.tasks.recorder import builtin_trajectories
from pivot_envs.trajectory import Trajectory, load_trajectories


@dataclasses.dataclass
class TurnState:
    trajectory_id: str
    turn: int
    prompt: list[int]  # prompt ids of the conversation before assistant turn `turn`
    reference: list[int]  # the demonstration's assistant turn (ids, <|im_end|> included)
    trajectory: Trajectory


def terminal_trajectories(split: str = "train") -> list[Trajectory]:
    return load_trajectories(builtin_trajectories(split))


def consecutive_turns(policy: Any, *, trajectories: int, last_turns: int, min_turns: int = 4,
                      split: str = "train") -> list[TurnState]:
    """The last `last_turns` consecutive turns of the first `trajectories` trajectories that have at
    least `min_turns` turns, in visiting order (trajectory by trajectory, turn by turn)."""
    out: list[TurnState] = []
    picked = 0
    for traj in terminal_trajectories(split):
        if picked == trajectories:
            break
        if traj.num_turns < max(min_turns, last_turns):
            continue
        picked += 1
        for k in range(traj.num_turns - last_turns, traj.num_turns):
            prefix = traj.prefix(k)
            out.append(TurnState(traj.id, k, policy.prompt_ids(prefix, traj.tools),
                                 policy.completion_ids(prefix, traj.reference(k), traj.tools), traj))
    if picked < trajectories:
        raise ValueError(f"only {picked} trajectories of split {split!r} have >= {min_turns} turns")
    return out
