"""Fixtures of the importer tests: small hand-written files in each format (fixtures/), following the
public specs (OpenAI chat / Hermes, ShareGPT as LLaMA-Factory writes it, NeMo-Gym pivot rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def self_scores(trajectories, **env_kwargs) -> list[tuple[str, int, float, str]]:
    """(id, turn, reward, reason) of the demonstration judged against itself at every turn."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.base_env import pivot_env

    env = pivot_env(gym.make("PivotToolUse-v0", trajectories=trajectories, disable_env_checker=True, **env_kwargs))
    out = []
    for t in env.trajectories:
        for k in range(t.num_turns):
            env.reset(options={"trajectory": t.id, "turn": k})
            v = env.judge_actions([t.reference(k)])[0]
            out.append((t.id, k, v.reward, v.reason))
    env.close()
    return out
