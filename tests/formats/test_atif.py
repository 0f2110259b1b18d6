"""Harbor ATIF agent trajectories (the RFC's shape: steps with source, message, tool_calls and
observation results): converted to backend-free tool use, loaded and self-scored; a round trip
through NeMo-Gym rows keeps the decision points; bad steps name the field."""

from __future__ import annotations

import pytest

from pivot_envs.formats import import_file
from pivot_envs.trajectory import tool_calls_of

from .conftest import calls_back_and_forth, import_error, self_scores


def test_a_pretty_printed_trajectory_with_declared_tools(fixtures):
    (t,) = import_file("atif", fixtures / "atif_stocks.json")
    assert t.id == "atif-stocks-1" and t.domain == "tooluse"
    assert [m["role"] for m in t.messages] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert [c.arguments for c in tool_calls_of(t.reference(0))] == [{"ticker": "MSFT"}, {"ticker": "ORCL"}]
    assert t.reference(0)["content"] == "Fetching both quotes."  # reasoning_content is not part of the action
    assert [m["name"] for m in t.messages if m["role"] == "tool"] == ["quote", "quote"]
    assert t.tools[0]["function"]["parameters"]["properties"]["field"]["default"] == "price"
    assert t.task["meta"]["final_metrics"]["total_steps"] == 4 and "steps" not in t.task["meta"]


def test_results_without_a_call_are_what_the_agent_read_and_tools_are_inferred(fixtures):
    trajs = {t.id: t for t in import_file("atif", fixtures / "atif_runs.jsonl")}
    terminus = trajs["terminus-hello"]  # commands in the message text, the terminal back as feedback
    assert [m["role"] for m in terminus.messages] == ["user", "assistant", "user", "user", "assistant"]
    assert terminus.messages[2]["content"].startswith("root@box")
    assert terminus.messages[3]["content"] == "(context summarised)" and terminus.num_turns == 2  # empty step dropped
    search = trajs["search-then-answer"]
    schema = search.tools[0]["function"]
    assert schema["name"] == "web_search" and schema["parameters"]["properties"] == {
        "query": {"type": "string"}, "limit": {"type": "integer"}}


@pytest.mark.parametrize("verifier", ["canonical", "paper", "exact"])
def test_loaded_and_self_scored_at_every_turn(fixtures, verifier):
    trajs = import_file("atif", fixtures / "atif_stocks.json") + import_file("atif", fixtures / "atif_runs.jsonl")
    scores = self_scores(trajs, verifier=verifier)
    assert len(scores) == 7 and all(r == 1.0 for _, _, r, _ in scores), scores


def test_round_trip_through_nemo_gym_rows(fixtures):
    back, before = calls_back_and_forth(import_file("atif", fixtures / "atif_runs.jsonl"))
    assert back == before


@pytest.mark.parametrize("record, field", [
    ({"session_id": "x", "steps": []}, "steps"),
    ({"session_id": "x", "steps": [{"source": "robot", "message": "hi"}]}, "steps[0].source"),
    ({"session_id": "x", "steps": [{"source": "user", "message": "hi"}, {"source": "agent", "message": "",
      "tool_calls": [{"tool_call_id": "1", "function_name": "f", "arguments": "a=1"}]}]}, "steps[1].tool_calls[0].arguments"),
    ({"session_id": "x", "steps": [{"source": "user", "message": "hi"}, {"source": "agent", "message": "ok",
      "observation": {"result": []}}]}, "steps[1].observation"),
])
def test_bad_steps_name_the_line_and_field(tmp_path, record, field):
    e = import_error(tmp_path, "atif", record)
    assert e.line == 1 and e.field == field
