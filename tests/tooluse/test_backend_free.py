"""`PivotToolUse-v0` on plain chat tool-use data with made-up tools and no executable backend: the
BFCL-only task fields are derived from `messages`, the non-executing verifiers judge (the canonical
one honouring JSON-schema defaults and types), `verifier="execution"` is a clear error, a call to a
tool not in `tools` fails at load naming the trajectory and turn, episodes follow the demonstration."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs.base_env import pivot_env
from pivot_envs.domains.tooluse import turns
from pivot_envs.errors import BackendRequiredError, TrajectoryError
from pivot_envs.trajectory import load_trajectories

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.", "parameters": {
    "type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
        "days": {"type": "integer", "default": 1}, "detailed": {"type": ["boolean", "null"]}}}}}


def _call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def weather_trajectory(**task):
    return {"id": "w0", "domain": "tooluse", "task": task, "tools": [WEATHER], "messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("a", "get_weather", {"city": "Paris"})]},
        {"role": "tool", "tool_call_id": "a", "content": json.dumps({"temp": 21})},
        {"role": "assistant", "content": "It is 21 degrees in Paris."},
        {"role": "user", "content": "And"}, {"role": "user", "content": "in Oslo for 3 days?"},
        {"role": "assistant", "content": "", "tool_calls": [_call("b", "get_weather", {"city": "Oslo", "days": 3})]},
        {"role": "tool", "tool_call_id": "b", "content": json.dumps({"temp": [7, 8, 6]})},
        {"role": "assistant", "content": "Oslo: 7, 8 and 6 degrees."}]}


def make(verifier="canonical", **kwargs):
    return pivot_env(gym.make("PivotToolUse-v0", trajectories=[weather_trajectory()], verifier=verifier,
                              disable_env_checker=True, **kwargs))


def verdict(env, k, text):
    env.reset(options={"trajectory": "w0", "turn": k})
    return env.judge_actions([text])[0]


def call_text(args):
    return f'<tool_call>{json.dumps({"name": "get_weather", "arguments": args})}</tool_call>'


def test_user_turns_turn_mapping_and_message_kinds_are_derived_from_messages():
    t = load_trajectories([weather_trajectory()])[0]
    assert [[m["content"] for m in g] for g in turns.user_turns(t)] == [["Weather in Paris?"], ["And", "in Oslo for 3 days?"]]
    assert turns.turn_of_step(t) == [0, 0, 1, 1]
    assert [turns.message_kind(t, k) for k in range(4)] == [None, "close", None, "close"]
    assert turns.defaults(t) == {"get_weather": {"unit": "c", "days": 1}}
    assert not turns.has_backend(t)


@pytest.mark.parametrize("verifier", ["canonical", "functional", "paper", "exact"])
def test_the_demonstration_scores_1_at_every_turn(verifier):
    env = make(verifier)
    assert [verdict(env, k, env.trajectories[0].reference(k)).reward for k in range(4)] == [1.0] * 4
    env.close()


@pytest.mark.parametrize("args, ok", [
    ({"city": "Paris", "unit": "c"}, True),   # an explicit JSON-schema default equals an omitted one
    ({"city": "Paris", "days": 1}, True),
    ({"city": "Paris", "days": "1"}, True),   # an integer string for an integer parameter
    ({"city": "Paris", "days": 1.0}, True),
    ({"days": 1, "unit": "c", "city": "Paris"}, True),  # order-free
    ({"city": "Paris", "unit": "f"}, False),
    ({"city": "Paris", "days": 2}, False),
    ({"city": "paris"}, False),
    ({"city": "Paris", "detailed": "yes"}, False),
    ({"town": "Paris"}, False),
])
def test_canonical_honours_schema_defaults_and_types(args, ok):
    env = make("canonical")
    v = verdict(env, 0, call_text(args))
    assert v.equivalent is ok, v.reason
    env.close()


def test_paper_and_exact_need_no_backend_either():
    paper, exact = make("paper"), make("exact")
    assert verdict(paper, 0, call_text({"city": "Paris"})).equivalent
    assert not verdict(paper, 0, call_text({"city": "Paris", "unit": "c"})).equivalent  # the paper rule: same keys
    assert not verdict(exact, 2, call_text({"city": "Oslo", "days": 3, "unit": "c"})).equivalent  # strict: no defaults
    assert verdict(exact, 3, "Oslo: 7, 8 and 6 degrees.").equivalent
    assert not verdict(exact, 3, "Oslo: 7, 8 and 6.").equivalent
    paper.close()
    exact.close()


def test_a_closing_message_must_report_what_the_turn_returned():
    env = make("canonical")
    assert verdict(env, 1, "Paris has 21 degrees right now.").equivalent
    assert not verdict(env, 1, "Done.").equivalent
    env.close()


def test_execution_on_backend_free_data_is_a_clear_error():
    with pytest.raises(BackendRequiredError, match=r"trajectory 'w0' has none.*verifier='canonical'"):
        make("execution")


def test_a_call_to_a_tool_not_in_tools_fails_at_load_naming_trajectory_and_turn(tmp_path):
    rec = weather_trajectory()
    rec["messages"][7]["tool_calls"][0]["function"]["name"] = "get_forecast"
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(TrajectoryError) as e:
        gym.make("PivotToolUse-v0", trajectories=str(path), verifier="canonical")
    assert e.value.line == 1 and e.value.field == "messages[7].tool_calls[0].function.name"
    assert "trajectory 'w0' turn 2 calls 'get_forecast', which is not in its tools ['get_weather']" in str(e.value)


def test_arguments_that_are_not_a_json_object_fail_at_load():
    rec = weather_trajectory()
    rec["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{city: Paris}"
    with pytest.raises(TrajectoryError, match=r"turn 0: the arguments of 'get_weather' are not a JSON object"):
        load_trajectories([rec])


def test_an_episode_follows_the_demonstration():
    env = make("canonical", mode="episode")
    t = env.trajectories[0]
    env.reset(options={"trajectory": "w0", "turn": 0})
    rewards = []
    for k in range(t.num_turns):
        obs, r, term, _, info = env.step(t.reference(k))
        rewards.append(r)
        if k == 0:
            assert obs["messages"][-1]["content"] == json.dumps({"temp": 21})  # the recorded output
        if k == 1:
            assert obs["messages"][-1] == {"role": "user", "content": "And\nin Oslo for 3 days?"}
    assert rewards == [0.0, 0.0, 0.0, 1.0] and term and info["success"]
    env.reset(options={"trajectory": "w0", "turn": 0})
    obs, *_ = env.step(call_text({"city": "Rome"}))
    assert "differs from the demonstration" in obs["messages"][-1]["content"]
    _, r, term, _, info = env.step("Rome is warm.")
    assert r == 0.0 and term and "turn 0" in info["reason"]
    env.close()
