"""OpenAI / Hugging Face chat JSONL: structured, legacy and Hermes tool calls; derived ids; the env
loads the result and the demonstration scores 1 against itself; a round trip through NeMo-Gym rows
keeps every decision point; bad records name the file, line and field."""

from __future__ import annotations

import json

import pytest

from pivot_envs.errors import TrajectoryError
from pivot_envs.formats import import_file, nemo_gym
from pivot_envs.formats.common import Where
from pivot_envs.trajectory import tool_calls_of

from .conftest import self_scores


def test_hermes_legacy_and_structured_calls_become_tool_calls(fixtures):
    trajs = {t.id: t for t in import_file("chat", fixtures / "chat_hermes.jsonl")}
    assert set(trajs) == {"hermes-weather", "chat_hermes-2", "hermes-parallel", "hermes-system-tools"}  # unnamed: stem-line
    weather = trajs["hermes-weather"]
    assert weather.domain == "tooluse" and weather.tools[0]["function"]["name"] == "get_weather"  # tools from a JSON string
    assert [(c.name, c.arguments) for c in tool_calls_of(weather.reference(0))] == [("get_weather", {"city": "Lisbon"})]
    assert weather.reference(0)["content"] == ""  # the <tool_call> block left no text behind
    assert [m["role"] for m in weather.messages] == ["system", "user", "assistant", "tool", "assistant"]  # <tool_response>
    assert weather.messages[3]["name"] == "get_weather"
    legacy = trajs["chat_hermes-2"]
    assert legacy.messages[0] == {"role": "system", "content": "Answer order questions."}  # developer, text parts
    assert tool_calls_of(legacy.reference(0))[0].arguments == {"order_id": "A-1138"}  # legacy function_call
    assert legacy.messages[3]["role"] == "tool" and legacy.task == {"meta": {"source": "support-logs-v2"}}
    parallel = trajs["hermes-parallel"]
    assert parallel.reference(0)["content"] == "Checking both."
    assert [c.arguments["ticker"] for c in tool_calls_of(parallel.reference(0))] == ["NVDA", "AMD"]
    assert [m.get("name") for m in parallel.messages if m["role"] == "tool"] == ["get_stock", "get_stock"]
    system_tools = trajs["hermes-system-tools"]  # tools in the system prompt (a Python literal), flat tool_calls
    assert [t["function"]["name"] for t in system_tools.tools] == ["get_stock_price"]
    assert tool_calls_of(system_tools.reference(0))[0].arguments == {"symbol": "AAPL"}


@pytest.mark.parametrize("name", ["chat_hermes.jsonl", "chat_tooluse.jsonl"])
@pytest.mark.parametrize("verifier", ["canonical", "paper", "exact", "functional"])
def test_the_env_loads_it_and_the_demonstration_scores_1_at_every_turn(fixtures, name, verifier):
    scores = self_scores(import_file("chat", fixtures / name), verifier=verifier)
    assert scores and all(r == 1.0 for _, _, r, _ in scores), [s for s in scores if s[2] != 1.0]


def test_round_trip_through_nemo_gym_rows_keeps_every_decision_point(fixtures):
    trajs = import_file("chat", fixtures / "chat_tooluse.jsonl")
    rows = nemo_gym.export_rows(trajs)
    assert len(rows) == sum(t.num_turns for t in trajs)
    back = [nemo_gym.to_trajectory(r, Where("rows", i)) for i, r in enumerate(rows, 1)]
    states = [(t, k) for t in trajs for k in range(t.num_turns)]
    for (t, k), b in zip(states, back):
        ref, got = t.reference(k), b["messages"][-1]
        assert [(c.name, c.arguments) for c in tool_calls_of(got)] == [(c.name, c.arguments) for c in tool_calls_of(ref)]
        assert (got.get("content") or "") == ("" if ref.get("tool_calls") else ref["content"])
        assert [m["role"] for m in b["messages"][:-1]] == [m["role"] for m in t.prefix(k)]
        assert b["tools"] == t.tools


@pytest.mark.parametrize("line, field, words", [
    ('{"tools": [], "messages": [{"role": "robot", "content": "hi"}]}', "messages[0].role", "unknown role"),
    ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "<tool_call>{bad</tool_call>"}]}',
     "messages[1].content", "not valid JSON"),
    (('{"tools": [{"name": "a"}], "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "",'
      ' "tool_calls": [{"id": "1", "type": "function", "function": {"name": "b", "arguments": "{}"}}]}]}'),
     "messages[1].tool_calls[0].function.name", "turn 0 calls 'b', which is not in its tools ['a']"),
    ('{"conversations": []}', "messages", "missing required field"),
    ('{"tools": "not json", "messages": [{"role": "user", "content": "x"}]}', "tools", "JSON list"),
])
def test_a_bad_record_names_the_file_line_and_field(tmp_path, line, field, words):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "ok"}]})
                    + "\n\n" + line + "\n")
    with pytest.raises(TrajectoryError) as e:
        import_file("chat", path)
    assert e.value.line == 3 and e.value.field == field and e.value.source == str(path)
    assert words in str(e.value) and str(path) in str(e.value)


def test_an_empty_file_names_the_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(TrajectoryError, match=r"empty\.jsonl: the file is empty"):
        import_file("chat", path)
