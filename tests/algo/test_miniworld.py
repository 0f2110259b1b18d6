"""The miniature world of the paper table: the verifier invariants (the demonstration is equivalent
to itself at every turn; a constant reply earns nothing), functional vs exact vs the paper's rule,
whole episodes scored by the task, and disjoint task splits."""

from __future__ import annotations

import pytest

from pivot_algo import miniworld
from pivot_algo.miniworld import MiniWorldEnv
from pivot_envs.parsing import render_tool_call


def _all_turns(trajectories):
    for t in trajectories:
        for k in range(sum(m["role"] == "assistant" for m in t["messages"])):
            yield t, k


@pytest.mark.parametrize("family", ["A", "B", "tool"])
@pytest.mark.parametrize("verifier", MiniWorldEnv.VERIFIERS)
def test_demonstration_is_equivalent_to_itself_and_constants_earn_nothing(family, verifier):
    trajectories = miniworld.tasks(family, "pretrain", "dev", 6, canonical=False)
    env = MiniWorldEnv(trajectories, verifier=verifier)
    for t, k in _all_turns(trajectories):
        _, info = env.reset(options={"trajectory": t["id"], "turn": k})
        demo, ok, done, empty = env.unwrapped.judge_actions([info["reference"], "ok", "Done.", ""])
        assert demo.reward == 1.0, (t["id"], k, demo.reason)
        assert ok.reward == done.reward == empty.reward == 0.0, (t["id"], k)
    env.close()


@pytest.mark.parametrize("verifier, expected", [("execution", [1, 1, 1, 0, 0]), ("exact", [1, 0, 0, 0, 0]),
                                                ("paper", [1, 0, 0, 0, 0])])
def test_functional_reward_credits_equivalent_expressions(verifier, expected):
    # Group B task, turn 0: "x = s. Next: times n"; the demonstration writes x*n.
    t = miniworld.make_task("B", 7, canonical=True)
    op, n = t["task"]["ops"][0]
    env = MiniWorldEnv([t], verifier=verifier)
    env.reset(options={"trajectory": t["id"], "turn": 0})
    ref = t["messages"][1]["content"]
    start = t["task"]["start"]
    want = start * n if op == "times" else start + 2 * n
    variants = [ref, f"({ref})", f"x+{want}-x", f"x*{n + 1}", render_tool_call("apply", {"expr": ref})]
    rewards = [v.reward for v in env.unwrapped.judge_actions(variants)]
    assert rewards == expected, (variants, rewards)
    env.close()


def test_episode_reward_is_the_tasks_own_check():
    trajectories = miniworld.tasks("A", "eval", "dev", 3) + miniworld.tasks("tool", "eval", "dev", 3)
    env = MiniWorldEnv(trajectories, mode="episode")
    for t in trajectories:
        env.reset(options={"trajectory": t["id"], "turn": 0})
        for m in (m for m in t["messages"] if m["role"] == "assistant"):
            _, reward, terminated, truncated, _ = env.step(m)
            if terminated or truncated:
                break
        assert terminated and reward == 1.0, t["id"]
        # A wrong final report fails the task.
        env.reset(options={"trajectory": t["id"], "turn": 0})
        actions = [m for m in t["messages"] if m["role"] == "assistant"]
        for m in actions[:-1]:
            env.step(m)
        _, reward, terminated, _, info = env.step(str(t["task"]["result"] + 1))
        assert terminated and reward == 0.0 and info["reported"] == t["task"]["result"] + 1
    env.close()


def test_splits_are_disjoint():
    ids = {}
    for purpose in ("pretrain", "train", "eval"):
        for phase in ("dev", "test"):
            ids[(purpose, phase)] = {t["id"] for t in miniworld.tasks("B", purpose, phase, 200)}
    keys = list(ids)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not ids[a] & ids[b], (a, b)


def test_env_passes_gymnasiums_checker():
    from gymnasium.utils.env_checker import check_env

    env = MiniWorldEnv(miniworld.tasks("B", "train", "dev", 4))
    check_env(env, skip_render_check=True)
    env.close()


def test_powers_are_not_evaluated():
    assert miniworld.evaluate("9**9**9", 1) is None and miniworld.evaluate("x*3", 2) == 6
