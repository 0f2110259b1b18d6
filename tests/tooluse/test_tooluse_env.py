"""PivotToolUse-v0: Gymnasium contract, pivot and episode modes on real BFCL entries, and isolation
(a backend call that raises, a backend call that never returns)."""

from __future__ import annotations

import json
import os
import time

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import pivot_envs  # noqa: F401


def call(name, **args):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"


@pytest.mark.parametrize("mode", ["pivot", "episode"])
def test_check_env(bfcl_suite, mode):
    env = gym.make("PivotToolUse-v0", trajectories=bfcl_suite[:5], mode=mode, reset_to_turn=1)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def test_builtin_suite_and_reset_info(bfcl_suite):
    env = gym.make("PivotToolUse-v0", categories=["miss_func"], limit=2)
    try:
        assert len(env.unwrapped.trajectories) == 2
        obs, info = env.reset(options={"trajectory": "multi_turn_miss_func_0", "turn": 7})
        assert info["reference"]["content"] and not info["reference"].get("tool_calls")  # clarification turn
        assert "sort" not in [t["function"]["name"] for t in obs["tools"]]                 # held out
        _, r, *_ = env.step(call("sort", file_name="final_report.pdf"))
        assert r == 0.0
        obs, info = env.reset(options={"trajectory": "multi_turn_miss_func_0", "turn": 8})
        assert "sort" in [t["function"]["name"] for t in obs["tools"]]
        _, r, *_ = env.step(info["reference"])
        assert r == 1.0
    finally:
        env.close()


def _reference_actions_from(traj, k):
    return [traj.reference(j) for j in range(k, traj.num_turns)]


@pytest.mark.parametrize("tid, k", [("multi_turn_base_0", 0), ("multi_turn_miss_param_3", 0),
                                    ("multi_turn_miss_func_0", 5), ("multi_turn_long_context_1", 2)])
def test_episode_with_the_demonstration_succeeds(bfcl_suite, tid, k):
    traj = next(t for t in bfcl_suite if t.id == tid)
    env = gym.make("PivotToolUse-v0", trajectories=[traj], mode="episode", max_turns=200)
    try:
        obs, info = env.reset(options={"trajectory": tid, "turn": k})
        for a in _reference_actions_from(traj, k):
            obs, r, term, trunc, info = env.step(a)
        assert term and not trunc and r == 1.0, info.get("turn_checks")
        # the user turns were served in order
        users = [m["content"] for m in obs["messages"] if m["role"] == "user"]
        assert users[-1] == traj.task["user_turns"][-1][0]["content"]
    finally:
        env.close()


def test_episode_wrong_state_fails(bfcl_suite):
    traj = next(t for t in bfcl_suite if t.id == "multi_turn_base_0")
    env = gym.make("PivotToolUse-v0", trajectories=[traj], mode="episode", max_turns=200)
    try:
        env.reset(options={"trajectory": traj.id, "turn": 0})
        env.step(call("mkdir", dir_name="not_what_was_asked"))
        for a in _reference_actions_from(traj, 0):
            _, r, term, trunc, info = env.step(a)
            if term or trunc:
                break
        assert r == 0.0 and "state differs" in info["reason"]
    finally:
        env.close()


def test_backend_exception_is_an_output(counter_env_kwargs):
    env = gym.make("PivotToolUse-v0", mode="episode", **counter_env_kwargs)
    try:
        env.reset(options={"trajectory": 0, "turn": 0})
        obs, _, term, trunc, _ = env.step(call("boom"))
        assert obs["messages"][-1]["role"] == "tool" and "boom on purpose" in obs["messages"][-1]["content"]
        assert not term and not trunc
    finally:
        env.close()


@pytest.mark.parametrize("mode", ["pivot", "episode"])
def test_backend_call_that_never_returns(counter_env_kwargs, mode):
    env = gym.make("PivotToolUse-v0", mode=mode, verifier="execution", **counter_env_kwargs)
    u = env.unwrapped
    try:
        env.reset(options={"trajectory": 0, "turn": 0})
        u.worker.request("ping")
        pid_before = u.worker.pid
        t0 = time.perf_counter()
        _, r, _, _, info = env.step(call("hang"))
        assert time.perf_counter() - t0 < 10
        assert r == 0.0
        if mode == "pivot":
            assert not info["masked"] and "did not finish" in info["reason"], info["reason"]
        else:
            assert "did not return" in info_last_tool(env)
        # the hung worker is gone, and the next reset + reference action work on a clean state
        with pytest.raises(ProcessLookupError):
            os.kill(pid_before, 0)
        _, info = env.reset(options={"trajectory": 0, "turn": 0})
        _, r, _, _, info = env.step(info["reference"])
        if mode == "pivot":
            assert r == 1.0, info["reason"]
        assert u.worker.pid != pid_before and u.worker.restarts >= 1
    finally:
        env.close()
    assert u.worker.pid is None


def info_last_tool(env):
    return env.unwrapped._messages[-1]["content"]


def test_reference_uses_counter_backend(counter_env_kwargs):
    env = gym.make("PivotToolUse-v0", **counter_env_kwargs)
    try:
        for action, reward in [(call("bump", by=2), 1.0), (call("bump", by=2.0), 1.0), (call("bump", by="2"), 1.0),
                               (call("bump"), 0.0), (call("bump", by=1), 0.0), (call("boom"), 0.0)]:
            env.reset(options={"trajectory": 0, "turn": 0})
            _, r, _, _, info = env.step(action)
            assert r == reward, (action, info["reason"])
    finally:
        env.close()


def test_warm_reset_hits_the_snapshot_cache(bfcl_suite):
    from pivot_envs.domains.tooluse.env import SnapshotCache

    cache = SnapshotCache()
    env = gym.make("PivotToolUse-v0", trajectories=bfcl_suite[:2], snapshot_cache=cache)
    try:
        env.reset(options={"trajectory": 0, "turn": 5})
        replayed = env.unwrapped.costs.replay_turns
        misses = cache.misses
        env.reset(options={"trajectory": 0, "turn": 5})
        env.reset(options={"trajectory": 0, "turn": 3})
        assert env.unwrapped.costs.replay_turns == replayed and cache.misses == misses
    finally:
        env.close()
