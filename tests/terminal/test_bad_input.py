"""Bad input to PivotTerminal-v0 gets a clear typed error or a reward-0 verdict with a reason; never a
crash, never a leaked sandbox (both backends)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs.errors import (
    TrajectoryError,
    TurnOutOfRangeError,
    UnknownTrajectoryError,
)
from pivot_envs.parsing import render_bash_call, render_tool_call


def test_turn_out_of_range_and_unknown_trajectory(local_backend):
    env = gym.make("PivotTerminal-v0", sandbox=local_backend, trajectory=0)
    try:
        _, info = env.reset()
        with pytest.raises(TurnOutOfRangeError, match=f"valid turns: 0..{info['num_turns'] - 1}"):
            env.reset(options={"turn": info["num_turns"]})
        with pytest.raises(TurnOutOfRangeError):
            env.reset(options={"turn": -1})
        with pytest.raises(UnknownTrajectoryError, match="no trajectory with id"):
            env.reset(options={"trajectory": "no-such-id"})
        with pytest.raises(ValueError, match="unknown reset option"):
            env.reset(options={"turns": 1})
    finally:
        env.close()


def test_malformed_jsonl_is_named(tmp_path, local_backend):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"id": "a", "domain": "terminal", "task": {}, "tools": [], "messages": [{"role": "user"}]}\n'
                 '{"id": "b", "domain": "terminal"\n')
    with pytest.raises(TrajectoryError, match="line 1.*messages"):
        gym.make("PivotTerminal-v0", trajectories=str(p), sandbox=local_backend)


def test_wrong_domain_and_bad_mode(local_backend):
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    rec = dict(builtin_trajectories("train")[0], domain="tooluse")
    with pytest.raises(TrajectoryError, match="matching env"):
        gym.make("PivotTerminal-v0", trajectories=[rec], sandbox=local_backend)
    with pytest.raises(ValueError, match="mode must be one of"):
        gym.make("PivotTerminal-v0", sandbox=local_backend, mode="rollout")


@pytest.mark.parametrize("action", [
    "no tool call at all, just chatter",
    "<tool_call>{not json}</tool_call>",
    render_tool_call("rm", {"path": "/"}),
    render_bash_call("sleep 100"),
    render_bash_call("cat /dev/urandom | base64"),
    render_bash_call(":(){ :|:& };:"),
])
def test_bad_actions_are_verdicts_and_nothing_leaks(sandbox_backend, action):
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    traj = dict(builtin_trajectories("train")[0])
    traj["task"] = dict(traj["task"], timeout_s=3)
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=sandbox_backend, trajectory=0, reset_to_turn=0)
    try:
        env.reset()
        _, reward, terminated, _, info = env.step(action)
        assert terminated and reward == 0.0 and not info["masked"]
        assert info["reason"]
        # the env is still usable, and the demonstration still scores 1
        env.reset()
        _, reward, *_ = env.step(info["reference"])
        assert reward == 1.0
    finally:
        env.close()
    assert sandbox_backend.live_resources() == []
