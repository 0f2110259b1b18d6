"""The miniature world of the paper table: the verifier invariants (the demonstration is equivalent
to itself at every turn; a constant reply earns nothing), functional vs exact vs the paper's rule,
whole episodes scored by the task, and disjoint task splits."""

from __future__ import annotations

import random
import re

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
    for purpose in ("pretrain", "train", "val", "eval"):
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


@pytest.fixture(scope="module")
def world_policy():
    from pivot_algo.policy.hf import HFPolicy
    from pivot_algo.policy.tiny import build_model

    tokenizer = miniworld.build_world_tokenizer()
    return HFPolicy(build_model(len(tokenizer), 0), tokenizer, name="tiny")


def test_world_tokenizer_writes_a_number_with_the_same_tokens_in_prompt_and_answer(world_policy):
    # The report copies x from "x = 0384. Next: report": that is learnable only if 384 is the same
    # tokens in both places (the tiny model's tokenizer writes ' 3' '84' in the prompt, '38' '4' after).
    for family in ("A", "B", "tool"):
        for t in miniworld.tasks(family, "eval", "dev", 10):
            k = sum(m["role"] == "assistant" for m in t["messages"]) - 1  # the report turn
            assistant_msgs = [i for i, m in enumerate(t["messages"]) if m["role"] == "assistant"]
            prefix = t["messages"][: assistant_msgs[k]]
            prompt = world_policy.prompt_ids(prefix, t["tools"])
            answer = world_policy.completion_ids(prefix, t["messages"][assistant_msgs[k]], t["tools"])[:-1]
            assert len(answer) == len(miniworld.show(t["task"]["result"])) == 4  # one token per digit, fixed width
            windows = {tuple(prompt[i:i + len(answer)]) for i in range(len(prompt) - len(answer) + 1)}
            assert tuple(answer) in windows, (t["id"], world_policy.tokenizer.convert_ids_to_tokens(answer))


def test_world_tokenizer_keeps_the_generation_prompt_a_prefix_of_every_turn(world_policy):
    # prompt_and_completion_ids raises when the prompt's tokens are not a prefix of prompt + answer
    # (a merge across "assistant\n" and the answer's first characters would make sampling and
    # training see different tokens); every turn must also end with the end-of-turn token.
    end = world_policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for family in ("A", "B", "tool"):
        for t in miniworld.tasks(family, "pretrain", "dev", 20, canonical=False):
            for i, m in enumerate(t["messages"]):
                if m["role"] == "assistant":
                    ids = world_policy.completion_ids(t["messages"][:i], m, t["tools"])
                    assert ids[-1] == end and end not in ids[:-1]


def test_equivalent_forms_only_rearrange_the_operand():
    # A variant must not need arithmetic on n (x+1+{n-1} did): every form holds n as written.
    for op in ("add", "subtract", "times", "add_twice"):
        for n in range(2, 10):
            for form in {miniworld._expression(op, n, random.Random(s)) for s in range(40)}:
                assert set(re.findall(r"\d+", form)) <= {str(n), "2"}, form
                assert miniworld.evaluate(form, 5) == miniworld._apply(op, n, 5), form


def test_episode_tool_output_is_what_the_demonstration_shows():
    # Pivot mode replays the trajectory's tool messages; episode mode makes its own: they must agree,
    # or profiling and evaluation would see different conversations.
    for t in miniworld.tasks("tool", "eval", "dev", 5):
        env = MiniWorldEnv([t], mode="episode")
        env.reset(options={"trajectory": t["id"], "turn": 0})
        shown = [m["content"] for m in t["messages"] if m["role"] == "tool"]
        for i, m in enumerate(m for m in t["messages"] if m["role"] == "assistant" and m.get("tool_calls")):
            obs, *_ = env.step(m)
            assert obs["messages"][-1]["content"] == shown[i]
        env.close()


def test_numbers_stay_four_digits_at_any_horizon_and_group_b_multiplies_once():
    # The display is fixed-width (miniworld.show): every value a task reaches must fit in it, also in
    # the horizon sweep's long tasks, which is why group B has at most one `times` per task.
    for horizon in (None, 2, 8, 16):
        for family in ("A", "B", "tool"):
            for t in miniworld.tasks(family, "eval", "dev", 50, horizon=horizon):
                ops = t["task"]["ops"]
                assert horizon is None and len(ops) in (2, 3) or len(ops) == horizon
                assert sum(op == "times" for op, _ in ops) <= 1
                x = t["task"]["start"]
                assert 30 <= x <= (999 if family == "B" else 9972)
                for op, n in ops:
                    x = {"add": x + n, "subtract": x - n, "times": x * n, "add_twice": x + 2 * n}[op]
                    assert 0 <= x < 10_000, t["id"]
                assert t["messages"][-1]["content"] == f"{x:04d}" == miniworld.show(t["task"]["result"])


def test_report_only_tasks_are_a_copy_and_horizons_have_their_own_ids():
    t = miniworld.make_task("A", 3, canonical=True, horizon=0)
    assert [m["role"] for m in t["messages"]] == ["user", "assistant"]
    assert t["messages"][0]["content"].endswith("Next: report") and t["messages"][1]["content"] in t["messages"][0]["content"]
    assert miniworld.make_task("B", 3, canonical=True, horizon=4)["id"] != miniworld.make_task("B", 3, canonical=True)["id"]


def test_long_pretraining_mix_cycles_horizons_and_keeps_the_default_world():
    # The horizon sweep's bases ("long" presets) meet conversations of 2..16 operations in pre-training;
    # x must stay positive and four digits in those too (group A subtracts up to 9 per operation).
    mix = miniworld.PretrainMix(group_a=60, tool=60, group_b=30, report=5, tool_short=5, max_horizon=16)
    tasks = mix.trajectories("dev", 0)
    lengths = {t["task"]["family"]: set() for t in tasks}
    for t in tasks:
        lengths[t["task"]["family"]].add(len(t["task"]["ops"]))
        x = t["task"]["start"]
        for op, n in t["task"]["ops"]:
            x = {"add": x + n, "subtract": x - n, "times": x * n, "add_twice": x + 2 * n}[op]
            assert 0 < x < 10_000, t["id"]
    assert lengths["B"] == set(range(2, 17))
    assert lengths["A"] == {0} | set(range(2, 17)) and lengths["tool"] == {1} | set(range(2, 17))  # report-only, one-call
    # Without max_horizon nothing moves: the default world's tasks are the ones its results were made on.
    assert miniworld.PretrainMix(group_a=3, tool=0, group_b=0).trajectories("dev", 0) == \
        miniworld.tasks("A", "pretrain", "dev", 3, canonical=False)
    assert miniworld.make_task("A", 1_000_000, canonical=False)["task"] == \
        {"family": "A", "start": 7715, "ops": [["subtract", 8], ["add", 6]], "result": 7713}
