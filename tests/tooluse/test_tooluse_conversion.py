"""BFCL multi-turn -> trajectories: every entry converts, and replaying the demonstration rebuilds
exactly the state BFCL's own executor reaches on the ground truth."""

from __future__ import annotations

import json
import random

import pytest

from pivot_envs.domains.tooluse import backends, bfcl
from pivot_envs.trajectory import validate_record

EXPECTED_ENTRIES = {"base": 200, "long_context": 200, "miss_func": 200, "miss_param": 200}


def test_every_entry_converts_and_validates(bfcl_suite):
    by_cat: dict[str, int] = {}
    for t in bfcl_suite:
        validate_record(t.to_dict())
        cat = t.task["category"].removeprefix("multi_turn_")
        by_cat[cat] = by_cat.get(cat, 0) + 1
        assert len(t.task["turn_of_step"]) == t.num_turns
        # one closing / clarifying message per BFCL turn, tool calls one per message
        assert len(t.task["message_turns"]) == len(t.task["user_turns"]) == len(t.task["ground_truth"])
        for k in range(t.num_turns):
            ref = t.reference(k)
            assert len(ref.get("tool_calls") or []) <= 1
            assert bool(ref.get("tool_calls")) != (str(k) in t.task["message_turns"])
    assert by_cat == EXPECTED_ENTRIES


def test_ground_truth_turn_counts(bfcl_suite):
    """Empty ground-truth turns become clarification messages: miss_func/miss_param have one per entry."""
    kinds = {}
    for t in bfcl_suite:
        cat = t.task["category"]
        kinds.setdefault(cat, 0)
        kinds[cat] += sum(1 for v in t.task["message_turns"].values() if v == "clarify")
    assert kinds["multi_turn_miss_func"] >= 200 and kinds["multi_turn_miss_param"] >= 200
    assert all(t.tools and all(tool["function"]["parameters"]["type"] == "object" for tool in t.tools)
               for t in bfcl_suite)


def test_recorded_calls_are_the_ground_truth_calls(bfcl_suite):
    """Every demonstration call (and task["ground_truth"]) equals BFCL's ground-truth string parsed
    afresh: conversion must not let a backend that keeps an argument object (TwitterAPI's `mentions`
    list, extended by a later `mention` call) rewrite the recorded arguments."""
    by_id = {t.id: t for t in bfcl_suite}
    sigs_of: dict[tuple, dict] = {}
    for cat in bfcl.CATEGORIES:
        for entry in bfcl.load_entries(cat):
            traj = by_id[entry["id"]]
            classes = tuple(entry["involved_classes"])
            if classes not in sigs_of:
                sigs_of[classes] = bfcl._signatures(classes)
            sigs = sigs_of[classes]
            expected = [list(bfcl.parse_call(c, sigs)) for turn in entry["ground_truth"] for c in turn]
            recorded = [[c["function"]["name"], json.loads(c["function"]["arguments"])]
                        for m in traj.messages if m["role"] == "assistant" for c in m.get("tool_calls") or []]
            assert recorded == expected, entry["id"]
            assert [c for turn in traj.task["ground_truth"] for c in turn] == expected, entry["id"]


def test_types_are_json_schema(bfcl_suite):
    allowed = {"object", "number", "integer", "array", "boolean", "string"}

    def walk(schema):
        if "type" in schema:
            assert schema["type"] in allowed, schema
        for sub in schema.get("properties", {}).values():
            walk(sub)
        if "items" in schema:
            walk(schema["items"])

    for t in bfcl_suite[:50] + bfcl_suite[-50:]:
        for tool in t.tools:
            walk(tool["function"]["parameters"])


def test_miss_func_holds_functions_back(bfcl_suite):
    t = next(x for x in bfcl_suite if x.id == "multi_turn_miss_func_0")
    assert t.task["holdout"] == {"3": ["sort"]}
    assert "sort" not in bfcl.available_functions(t, 2)
    assert "sort" in bfcl.available_functions(t, 3)
    assert t.task["user_turns"][3][0]["content"] == bfcl.ADDED_FUNCTIONS_PROMPT


def test_positional_ground_truth_gets_parameter_names():
    sigs = bfcl._signatures(["GorillaFileSystem"])
    assert bfcl.parse_call("sort('final_report.pdf')", sigs) == ("sort", {"file_name": "final_report.pdf"})
    with pytest.raises(ValueError, match="Python call"):
        bfcl.parse_call("sort(", sigs)
    with pytest.raises(ValueError):
        bfcl.parse_call("__import__('os').system('true')", sigs)  # not name(...) with literal args


def _bfcl_oracle_fingerprint(entry: dict, upto_turn: int, tag: str) -> tuple[dict, list[str]]:
    """State after ground-truth turns 0..upto_turn-1, executed by BFCL's OWN executor (test oracle)."""
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (
        execute_multi_turn_func_call,
    )

    instances, outputs = None, []
    category = entry["id"].rsplit("_", 1)[0]
    if upto_turn == 0:
        _, instances = execute_multi_turn_func_call([], entry["initial_config"], entry["involved_classes"],
                                                    f"oracle{tag}", entry["id"], long_context="long_context" in category)
    for t in range(upto_turn):
        outs, instances = execute_multi_turn_func_call(entry["ground_truth"][t], entry["initial_config"],
                                                       entry["involved_classes"], f"oracle{tag}", entry["id"],
                                                       long_context="long_context" in category)
        outputs.extend(outs)
    return backends.fingerprint(instances), outputs


def _check_entries(entries, suite_by_id, rng):
    from pivot_envs.domains.tooluse.env import SnapshotCache, ToolUseEnv

    env = ToolUseEnv(trajectories=[suite_by_id[e["id"]] for e in entries], verifier="functional",
                     snapshot_cache=SnapshotCache())
    try:
        for e in entries:
            traj = suite_by_id[e["id"]]
            for t in range(len(e["ground_truth"])):
                k = min(i for i, s in enumerate(traj.task["turn_of_step"]) if s == t)  # first step of turn t
                ours = env.load_state(traj, k)
                oracle_fp, oracle_outs = _bfcl_oracle_fingerprint(e, t, f"{rng.random():.12f}".replace(".", ""))
                assert ours.fingerprint == oracle_fp, (e["id"], t)
                recorded = [m["content"] for m in traj.messages[: traj.assistant_indices[k]] if m["role"] == "tool"]
                assert recorded == oracle_outs, (e["id"], t)
            # the final state, after every action
            final = env.state_at(traj, traj.num_turns - 1)[1]
            # BFCL's executor keeps instances per (model tag, entry id) in module globals: the tag must be fresh,
            # or an earlier test's final state (same process) would be executed on again
            final_tag = "final" + f"{rng.random():.12f}".replace(".", "")
            assert final == _bfcl_oracle_fingerprint(e, len(e["ground_truth"]), final_tag)[0]
            # the reference action is equivalent to itself at every turn
            for k in range(traj.num_turns):
                st = env.load_state(traj, k)
                v = env.judge(st, _parsed(traj.reference(k)), traj.reference(k))
                assert v.equivalent and not v.masked, (e["id"], k, v)
    finally:
        env.close()


def _parsed(msg):
    from pivot_envs.parsing import parse_action

    return parse_action(msg)


def _entries(categories):
    out = []
    for c in categories:
        out.extend(bfcl.load_entries(c))
    return out


def test_replay_matches_bfcl_executor_sample(bfcl_suite):
    rng = random.Random(0)
    by_id = {t.id: t for t in bfcl_suite}
    entries = _entries(bfcl.CATEGORIES)
    sample = [e for c in bfcl.CATEGORIES for e in rng.sample([x for x in entries if f"_{c}_" in x["id"]], 3)]
    _check_entries(sample, by_id, rng)


@pytest.mark.slow
def test_replay_matches_bfcl_executor_all(bfcl_suite):
    by_id = {t.id: t for t in bfcl_suite}
    _check_entries(_entries(bfcl.CATEGORIES), by_id, random.Random(1))


def test_cache_is_keyed_by_package_version(tmp_path, monkeypatch):
    monkeypatch.setenv("PIVOTRL_CACHE", str(tmp_path))
    path = bfcl.cache_path("base")
    assert str(tmp_path) in str(path) and bfcl.package_version() in str(path)
    trajs = bfcl.load_suite(["base"], limit=2)
    assert path.exists() and len(trajs) == 2
    assert json.loads(path.read_text().splitlines()[0])["id"] == "multi_turn_base_0"
