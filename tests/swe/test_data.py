"""The shipped SWE data: >= 200 instances over >= 5 repositories and every mutation kind, statements
that never leak the fix, a seeded split, and expert trajectories of 6-20 turns (recorded for a
subset of the instances: see README)."""

from __future__ import annotations

import collections
import json

import pytest

from pivot_envs.domains.swe.expert import builtin_trajectories
from pivot_envs.domains.swe.generator import split_of
from pivot_envs.domains.swe.mutations import KINDS
from pivot_envs.trajectory import load_trajectories


@pytest.fixture(scope="module")
def trajectories():
    return load_trajectories(builtin_trajectories("all"))


def test_counts_per_repository_kind_and_split(instances):
    assert len(instances) >= 200
    per_repo = collections.Counter(i["repo"] for i in instances)
    assert len(per_repo) >= 5 and min(per_repo.values()) >= 5, per_repo
    per_kind = collections.Counter(i["mutation"]["kind"] for i in instances)
    assert set(per_kind) == set(KINDS), per_kind
    splits = collections.Counter(i["split"] for i in instances)
    assert set(splits) == {"train", "val", "test"} and splits["train"] > splits["val"]
    assert all(i["split"] == split_of(i["instance_id"], 0) for i in instances)
    assert len({i["instance_id"] for i in instances}) == len(instances)


def test_every_instance_has_fail_and_pass_tests_and_a_statement_that_does_not_leak(instances):
    for inst in instances:
        f2p, p2p = json.loads(inst["FAIL_TO_PASS"]), json.loads(inst["PASS_TO_PASS"])
        assert f2p and p2p and not set(f2p) & set(p2p)
        statement = inst["problem_statement"]
        assert f2p[0] in statement
        changed = [line[1:].strip() for line in inst["patch"].splitlines()
                   if line[:1] in "+-" and not line.startswith(("+++", "---")) and len(line[1:].strip()) >= 8]
        for line in changed:
            assert line not in statement, (inst["instance_id"], line)
        assert "diff --git" not in statement


def test_expert_trajectories_of_6_to_20_turns_with_real_outputs(instances, trajectories):
    by_id = {i["instance_id"]: i for i in instances}
    assert len(trajectories) >= 30 and {t.id for t in trajectories} <= set(by_id)
    assert len({i["repo"] for i in (by_id[t.id] for t in trajectories)}) >= 3
    for t in trajectories:
        assert t.task["split"] == by_id[t.id]["split"]
        assert 6 <= t.num_turns <= 20, (t.id, t.num_turns)
        assert t.domain == "swe" and {x["function"]["name"] for x in t.tools} == {"bash", "str_replace_editor"}
        tool_msgs = [m for m in t.messages if m["role"] == "tool"]
        assert len(tool_msgs) == t.num_turns - 1 and all(m["content"] for m in tool_msgs)
        assert not (t.messages[-1].get("tool_calls")), "the last turn submits"
        editor_calls = [c for m in t.messages if m["role"] == "assistant" for c in m.get("tool_calls") or []
                        if c["function"]["name"] == "str_replace_editor"]
        assert any(json.loads(c["function"]["arguments"])["command"] == "str_replace" for c in editor_calls)
