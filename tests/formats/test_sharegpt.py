"""ShareGPT (as LLaMA-Factory writes it: a JSON array, `tools` as a JSON string, `function_call` /
`observation` turns, parallel calls as a list): converted, loaded, self-scored, round-tripped through
NeMo-Gym rows; bad records name the record and field."""

from __future__ import annotations

import json

import pytest

from pivot_envs.errors import TrajectoryError
from pivot_envs.formats import import_file
from pivot_envs.trajectory import tool_calls_of

from .conftest import calls_back_and_forth, self_scores


def test_function_call_and_observation_turns_become_calls_and_outputs(fixtures):
    trajs = {t.id: t for t in import_file("sharegpt", fixtures / "sharegpt.json")}
    calc = trajs["sharegpt-1"]  # no id: the file stem and the record number
    assert calc.messages[0] == {"role": "system", "content": "You can use a calculator."}
    assert [m["role"] for m in calc.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert tool_calls_of(calc.reference(0))[0].arguments == {"expression": "0.12*250"}
    assert calc.messages[3] == {"role": "tool", "content": "30", "tool_call_id": "call_0_0", "name": "calculator"}
    par = trajs["sg-parallel"]
    assert [c.arguments["city"] for c in tool_calls_of(par.reference(0))] == ["Rome", "Berlin"]
    outputs = [json.loads(m["content"])["city"] for m in par.messages if m["role"] == "tool"]
    assert outputs == ["Rome", "Berlin"]  # one output per call, split from the JSON list
    hermes = trajs["sg-hermes"]
    assert hermes.num_turns == 3 and tool_calls_of(hermes.reference(0))[0].name == "translate"


@pytest.mark.parametrize("verifier", ["canonical", "paper", "exact"])
def test_loaded_and_self_scored_at_every_turn(fixtures, verifier):
    scores = self_scores(import_file("sharegpt", fixtures / "sharegpt.json"), verifier=verifier)
    assert len(scores) == 7 and all(r == 1.0 for _, _, r, _ in scores), scores


def test_round_trip_through_nemo_gym_rows(fixtures):
    back, before = calls_back_and_forth(import_file("sharegpt", fixtures / "sharegpt.json"))
    assert back == before


@pytest.mark.parametrize("record, field", [
    ({"conversations": [{"from": "alien", "value": "x"}]}, "conversations[0].from"),
    ({"conversations": [{"from": "human", "value": "x"}, {"from": "function_call", "value": "calc(1)"}]},
     "conversations[1].value"),
    ({"conversations": [{"from": "human", "value": 3}]}, "conversations[0].value"),
    ({"messages": []}, "conversations"),
])
def test_bad_records_name_the_record_and_field(tmp_path, record, field):
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(TrajectoryError) as e:
        import_file("sharegpt", path)
    assert e.value.line == 1 and e.value.field == field and str(path) in str(e.value)
