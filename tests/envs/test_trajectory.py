"""Trajectory loading and validation: bad input names the line and the field."""

from __future__ import annotations

import json

import pytest

from pivot_envs.errors import TrajectoryError, TurnOutOfRangeError
from pivot_envs.trajectory import load_trajectories, tool_calls_of

GOOD = {
    "id": "t1", "domain": "terminal", "task": {"setup": "", "test": "true"},
    "tools": [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}}],
    "messages": [
        {"role": "system", "content": "sys"}, {"role": "user", "content": "do it"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": "bash", "arguments": "{\"command\": \"ls\"}"}}]},
        {"role": "tool", "tool_call_id": "c0", "content": "a.txt"},
        {"role": "assistant", "content": "done"},
    ],
}


def write(tmp_path, records):
    p = tmp_path / "t.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return p


def test_good_record_turns(tmp_path):
    (t,) = load_trajectories(write(tmp_path, [GOOD]))
    assert t.num_turns == 2
    assert [m["role"] for m in t.prefix(1)] == ["system", "user", "assistant", "tool"]
    assert t.reference(1)["content"] == "done"
    assert tool_calls_of(t.reference(0))[0].arguments == {"command": "ls"}
    assert len(t.actions_before(1)) == 1
    with pytest.raises(TurnOutOfRangeError, match="valid turns: 0..1"):
        t.prefix(2)


@pytest.mark.parametrize("mutate, line, field", [
    (lambda r: "{not json", 2, "<json>"),
    (lambda r: {k: v for k, v in r.items() if k != "messages"}, 2, "messages"),
    (lambda r: {**r, "domain": "chess"}, 2, "domain"),
    (lambda r: {**r, "messages": r["messages"][:2]}, 2, "messages"),
    (lambda r: {**r, "messages": [*r["messages"][:2], {"role": "robot", "content": "x"}]}, 2, "messages[2].role"),
    (lambda r: {**r, "messages": [*r["messages"][:2], {"role": "assistant", "content": ""}]}, 2, "messages[2]"),
    (lambda r: {**r, "tools": [{"name": "bash"}]}, 2, "tools[0]"),
])
def test_malformed_jsonl_names_line_and_field(tmp_path, mutate, line, field):
    bad = mutate(json.loads(json.dumps(GOOD)))
    p = write(tmp_path, [GOOD, bad])
    with pytest.raises(TrajectoryError) as e:
        load_trajectories(p)
    assert e.value.line == line and e.value.field == field
    assert f"line {line}" in str(e.value)


def test_duplicate_ids_rejected():
    with pytest.raises(TrajectoryError, match="duplicate"):
        load_trajectories([GOOD, GOOD])
