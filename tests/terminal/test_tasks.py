"""The generated terminal task suite: determinism, splits, tool-output format, and that every
family's scripted expert really solves its task in a real sandbox while the test fails before."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pivot_envs.domains.terminal.tasks import (
    FAMILIES,
    HELDOUT_FAMILIES,
    ExpertFailedError,
    builtin_trajectories,
    check_task,
    format_tool_output,
    generate_tasks,
    load_recorded,
    record_trajectory,
    suite,
)
from pivot_envs.sandbox import ExecResult
from pivot_envs.trajectory import validate_record

ALL = sorted(FAMILIES)


# ----------------------------------------------------------------------------- pure generation


def test_at_least_twelve_families_with_experts_of_3_to_15_steps():
    assert len(FAMILIES) >= 12
    for t in generate_tasks(len(ALL) * 3, seed=40):
        assert 3 <= len(t.expert) <= 15, t.id
        assert t.expert[0].command.split()[0] in {"ls", "head", "cat", "find", "stat", "grep", "jq", "sqlite3", "cd", "tar",
                                                  "awk"}, f"{t.id}: the expert should inspect first"


def test_same_seed_same_tasks_and_seeds_give_hundreds_of_distinct_tasks():
    a, b = generate_tasks(51, seed=3), generate_tasks(51, seed=3)
    assert a == b
    many = generate_tasks(len(ALL) * 20, seed=1000)
    assert len({t.content_key() for t in many}) == len(many)  # every task differs
    assert len({t.id for t in many}) == len(many)
    assert generate_tasks(17, seed=4)[0].content_key() != generate_tasks(17, seed=5)[0].content_key()


def test_expert_phrasing_varies_with_the_seed():
    for fam in ("text_count", "organize_files", "csv_aggregate"):
        shapes = {tuple(s.command.split()[0] for s in t.expert) + tuple(s.command for s in t.expert[-1:])
                  for t in generate_tasks(12, seed=0, families=[fam])}
        assert len(shapes) > 1, f"{fam}: all experts have the same form"


def test_splits_are_disjoint_and_heldout_families_never_train():
    ids = {s: {t.id for t in suite(s, 40)} for s in ("train", "val", "test", "heldout_families")}
    assert all(len(v) == 40 for v in ids.values())
    for s1, ids1 in ids.items():
        for s2, ids2 in ids.items():
            if s1 < s2:
                assert not ids1 & ids2, (s1, s2)
    train_fams = {t.family for t in suite("train", 200)}
    assert train_fams.isdisjoint(HELDOUT_FAMILIES) and len(HELDOUT_FAMILIES) >= 2
    assert {t.family for t in suite("heldout_families", 30)} == set(HELDOUT_FAMILIES)
    assert not {t.id for t in suite("train", 40, seed=0)} & {t.id for t in suite("train", 40, seed=1)}
    assert all(t.split == "val" for t in suite("val", 5))
    with pytest.raises(ValueError, match="unknown split"):
        suite("dev", 3)
    with pytest.raises(ValueError, match="unknown terminal task family"):
        generate_tasks(2, 0, families=["nope"])


def test_format_tool_output():
    assert format_tool_output(ExecResult(0, "a\nb\n", "")) == "a\nb"
    assert format_tool_output(ExecResult(0, "", "")) == "(no output)"
    assert format_tool_output(ExecResult(2, "out\n", "err\n")) == "out\nerr\n[exit code 2]"
    assert format_tool_output(ExecResult(-1, "x", "", timed_out=True), timeout_s=5) == "x\n[timed out after 5 s]"
    assert format_tool_output(ExecResult(0, "y", "", truncated=True)) == "y\n[output truncated]"
    long = format_tool_output(ExecResult(0, "a" * 100 + "b" * 100, ""), max_chars=50)
    assert long.startswith("a" * 25) and "b" * 25 in long and long.endswith("[output truncated]")


# ----------------------------------------------------------------------------- real sandboxes


def _assert_valid_trajectory(traj: dict, task) -> None:
    t = validate_record(json.loads(json.dumps(traj)))
    assert t.domain == "terminal" and t.tools[0]["function"]["name"] == "bash"
    assert [m["role"] for m in t.messages[:2]] == ["system", "user"]
    assert t.num_turns == len(task.expert) + 1
    for k in range(t.num_turns - 1):
        calls = t.reference(k)["tool_calls"]
        assert len(calls) == 1 and json.loads(calls[0]["function"]["arguments"]) == {"command": task.expert[k].command}
        assert len(t.tool_outputs_after(k)) == 1
    assert not t.reference(t.num_turns - 1).get("tool_calls")
    assert t.task["setup"] == task.setup and t.task["test"] == task.test and t.task["workdir"] == "/app"


@pytest.mark.local
@pytest.mark.parametrize("family", ALL)
def test_expert_solves_and_test_fails_initially_local(local_backend, family):
    for task in generate_tasks(2, seed=7000, families=[family]):
        check = check_task(task, local_backend)
        assert check.initial_test_exit != 0


@pytest.mark.local
@pytest.mark.slow
def test_expert_sweep_local(local_backend):
    """5 tasks per family at two seeds (170 tasks): the expert must pass every one."""
    for seed in (0, 90_000):
        for task in generate_tasks(len(ALL) * 5, seed=seed):
            check_task(task, local_backend)


@pytest.mark.local
def test_recording_is_valid_and_deterministic(local_backend):
    for task in generate_tasks(len(ALL), seed=123):
        first = record_trajectory(task, local_backend)
        _assert_valid_trajectory(first, task)
        if task.family in ("git_workflow", "find_cleanup", "checksums", "archive"):
            again = record_trajectory(task, local_backend)
            assert again["messages"] == first["messages"], f"{task.id}: outputs differ between two recordings"


@pytest.mark.local
def test_a_broken_expert_is_caught(local_backend):
    task = generate_tasks(1, seed=5, families=["config_edit"])[0]
    inspect_only = dataclasses.replace(task, expert=task.expert[:1])
    with pytest.raises(ExpertFailedError, match="did not pass the test"):
        record_trajectory(inspect_only, local_backend)
    no_op_test = dataclasses.replace(task, test="true\n")
    with pytest.raises(ExpertFailedError, match="already passes on the initial state"):
        check_task(no_op_test, local_backend)


@pytest.mark.docker
@pytest.mark.parametrize("family", ["git_workflow", "sqlite_query", "archive", "json_transform", "permissions",
                                    "find_cleanup"])
def test_expert_solves_on_docker(docker_backend, family):
    task = generate_tasks(1, seed=8000, families=[family])[0]
    assert check_task(task, docker_backend).initial_test_exit != 0


@pytest.mark.docker
@pytest.mark.slow
def test_expert_every_family_on_docker(docker_backend):
    for task in generate_tasks(len(ALL) * 2, seed=8100):
        check_task(task, docker_backend)


# ----------------------------------------------------------------------------- the shipped suite


def test_shipped_suite_is_valid():
    sizes = {s: len(load_recorded(s)) for s in ("train", "val", "test", "heldout_families")}
    assert sizes == {"train": 120, "val": 30, "test": 30, "heldout_families": 30}
    seen = set()
    for split in sizes:
        for rec in load_recorded(split):
            t = validate_record(rec)
            assert t.id not in seen
            seen.add(t.id)
            assert t.task["recorded_with"]["backend"] in ("docker", "local")
            assert (t.task["family"] in HELDOUT_FAMILIES) == (split == "heldout_families")
    assert len(builtin_trajectories("val", n=7)) == 7


@pytest.mark.local
def test_shipped_outputs_replay_identically(local_backend):
    """Fresh outputs of the recorded commands equal the recorded ones (replay compares them)."""
    from pivot_envs.domains.terminal.tasks.generator import make_task

    for rec in load_recorded("val")[:6]:
        task = make_task(rec["task"]["family"], rec["task"]["seed"], split="val")
        assert task.to_task_dict().items() <= rec["task"].items(), "the generator drifted from the shipped data"
        fresh = record_trajectory(task, local_backend)
        assert fresh["messages"] == rec["messages"], rec["id"]
