"""NeMo-Gym pivot rows: every action type, Responses-API items, agent_ref and pass rates kept; the
row's decision point is the trajectory's last turn; rows round-trip losslessly (byte for byte); an
edited trajectory exports what it now says."""

from __future__ import annotations

import json

import pytest

from pivot_envs.formats import export_file, import_file, nemo_gym
from pivot_envs.trajectory import Trajectory, tool_calls_of

from .conftest import import_error, self_scores


def test_rows_become_trajectories_whose_last_turn_is_the_expected_action(fixtures):
    trajs = {t.id: t for t in import_file("nemo_gym", fixtures / "nemo_gym_rows.jsonl")}
    first = trajs["ng-call-1"]
    assert first.tools[0] == {"type": "function", "function": {
        "name": "search_flights", "description": "Find flights.", "parameters": first.tools[0]["function"]["parameters"]}}
    assert tool_calls_of(first.reference(first.num_turns - 1))[0].arguments["destination"] == "SEA"
    kept = first.task["nemo_gym"]["row"]
    assert kept["agent_ref"]["name"] == "single_step_tool_use_simple_agent"
    assert (kept["pass_rate"], kept["pass_rate_total"], kept["pass_rate_passed"]) == (0.375, 8, 3)
    second = trajs["ng-call-2"]  # reasoning item dropped, function_call + output as a turn, content parts read
    assert [m["role"] for m in second.messages] == ["user", "assistant", "tool", "assistant"]
    assert second.messages[0]["content"].startswith("Book the cheapest") and second.messages[2]["name"] == "search_flights"
    batch = trajs["nemo_gym_rows-3"]
    assert [c.arguments["city"] for c in tool_calls_of(batch.reference(0))] == ["Kyiv", "Riga"]
    message = trajs["ng-message"]
    assert message.messages[0]["role"] == "system" and message.reference(1)["content"] == "2+2 is 4."
    assert message.reference(0)["content"] == "Let me compute it." and message.reference(0)["tool_calls"]


def test_every_turn_self_scores(fixtures):
    scores = self_scores(import_file("nemo_gym", fixtures / "nemo_gym_rows.jsonl"), verifier="canonical")
    assert len(scores) == 6 and all(r == 1.0 for _, _, r, _ in scores), scores


def test_rows_round_trip_losslessly_byte_for_byte(fixtures, tmp_path):
    trajs = import_file("nemo_gym", fixtures / "nemo_gym_rows.jsonl")
    via = tmp_path / "t.jsonl"
    export_file(trajs, via, to="pivotrl")  # through the pivotrl file too
    assert export_file(import_file("pivotrl", via), tmp_path / "rows.jsonl", to="nemo_gym") == 4
    original = (fixtures / "nemo_gym_rows.jsonl").read_text().splitlines()
    written = (tmp_path / "rows.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in written] == [json.loads(x) for x in original]
    assert [list(json.loads(x)) for x in written] == [list(json.loads(x)) for x in original]  # key order
    assert written == [json.dumps(json.loads(x), ensure_ascii=False) for x in original]


def test_an_edited_trajectory_exports_what_it_now_says(fixtures):
    t = import_file("nemo_gym", fixtures / "nemo_gym_rows.jsonl")[2]  # the batch, kept with ordered=false
    d = t.to_dict()
    d["messages"][-1]["tool_calls"] = d["messages"][-1]["tool_calls"][:1]
    row = nemo_gym.export_rows([Trajectory(**d)])[0]
    assert row["expected_action"] == {"type": "function_call", "name": "get_weather", "arguments": '{"city": "Kyiv"}'}
    assert row["agent_ref"]["name"] == "single_step_tool_use_simple_agent"


def test_pivot_states_export_one_row_each(fixtures):
    trajs = import_file("chat", fixtures / "chat_tooluse.jsonl")
    rows = nemo_gym.export_rows(trajs, {"compare-0": [1, 2]}, {"type": "responses_api_agents", "name": "mine"})
    assert [r["id"] for r in rows] == ["compare-0-turn1", "compare-0-turn2"]
    assert rows[0]["expected_action"]["type"] == "function_call" and rows[1]["expected_action"]["type"] == "message"
    assert rows[0]["responses_create_params"]["input"][-1]["type"] == "function_call_output"
    assert rows[0]["agent_ref"]["name"] == "mine"


@pytest.mark.parametrize("row, field", [
    ({"responses_create_params": {"input": []}}, "expected_action"),
    ({"responses_create_params": {"input": []}, "expected_action": {"type": "click"}}, "expected_action.type"),
    ({"responses_create_params": {"input": [{"role": "user", "content": "x"}]},
      "expected_action": {"type": "function_call_batch", "calls": []}}, "expected_action.calls"),
    ({"responses_create_params": {"input": [{"type": "web_search_call"}]},
      "expected_action": {"type": "message", "content": "x"}}, "responses_create_params.input[0].type"),
    ({"responses_create_params": {"input": [{"role": "user", "content": "x"}]},
      "expected_action": {"type": "function_call", "name": "f", "arguments": {"a": 1}}}, "expected_action.arguments"),
])
def test_bad_rows_name_the_line_and_field(tmp_path, row, field):
    e = import_error(tmp_path, "nemo_gym", row)
    assert e.line == 1 and e.field == field
