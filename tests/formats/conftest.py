"""Fixtures of the importer tests: small hand-written files in each format (fixtures/), following the
public specs (OpenAI chat / Hermes, ShareGPT as LLaMA-Factory writes it, NeMo-Gym pivot rows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pivot_envs.errors import TrajectoryError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def calls_back_and_forth(trajectories) -> tuple[list, list]:
    """The calls of every turn, as exported to NeMo-Gym rows and imported back, and as they were."""
    from pivot_envs.formats import nemo_gym
    from pivot_envs.formats.common import Where
    from pivot_envs.trajectory import tool_calls_of

    back = [nemo_gym.to_trajectory(r, Where("rows", i)) for i, r in enumerate(nemo_gym.export_rows(trajectories), 1)]
    refs = [t.reference(k) for t in trajectories for k in range(t.num_turns)]
    as_calls = lambda m: [(c.name, c.arguments) for c in tool_calls_of(m)]
    return [as_calls(b["messages"][-1]) for b in back], [as_calls(r) for r in refs]


def import_error(tmp_path, fmt: str, record) -> TrajectoryError:
    """The TrajectoryError that importing a one-record file raises."""
    import json

    from pivot_envs.formats import import_file

    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(TrajectoryError) as e:
        import_file(fmt, path)
    return e.value


def self_scores(trajectories, env_id: str = "PivotToolUse-v0", **env_kwargs) -> list[tuple[str, int, float, str]]:
    """(id, turn, reward, reason) of the demonstration judged against itself at every turn."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.base_env import pivot_env

    env = pivot_env(gym.make(env_id, trajectories=trajectories, disable_env_checker=True, **env_kwargs))
    out = []
    for t in env.trajectories:
        for k in range(t.num_turns):
            env.reset(options={"trajectory": t.id, "turn": k})
            v = env.judge_actions([t.reference(k)])[0]
            out.append((t.id, k, v.reward, v.reason))
    env.close()
    return out
