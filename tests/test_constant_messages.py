"""Constant-message policies earn nothing on the terminal domain's message turns (issue 8, the 95% rule).

The tool-use half of the rule is tested in tests/tooluse/test_tooluse_messages.py; here a seeded
sample of the built-in terminal trajectories' message turns (the final "done" turns) is judged
through `PivotTerminal-v0` on the local backend, with the same code the benchmark runs
(`benchmarks/constant_messages.py`). All turns: `python benchmarks/constant_messages.py`."""

from __future__ import annotations

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401 - registers the envs
from benchmarks.constant_messages import (
    CONSTANTS,
    DEMONSTRATION,
    TERMINAL_SPLITS,
    ZERO_SHARE_REQUIRED,
    judge_constants,
    message_turns,
    sample_turns,
)


@pytest.mark.local
@pytest.mark.parametrize("n", [2, pytest.param(20, marks=pytest.mark.slow)])
def test_constant_messages_earn_nothing_on_terminal_sample(local_backend, n):
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    trajs = [t for split in TERMINAL_SPLITS for t in builtin_trajectories(split)]
    env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=local_backend)
    try:
        turns = message_turns(env)
        assert len(turns) >= len(trajs)  # every trajectory ends with a message
        rewards = judge_constants(env, sample_turns(turns, n, seed=1))
    finally:
        env.close()
    for c in CONSTANTS:
        scored = [r for r in rewards[c] if r is not None]
        assert scored, f"every verdict for {c!r} was masked"
        assert sum(r == 0 for r in scored) / len(scored) >= ZERO_SHARE_REQUIRED, (c, scored)
    assert all(r == 1.0 for r in rewards[DEMONSTRATION]), rewards[DEMONSTRATION]
