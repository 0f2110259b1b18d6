"""Pivots as data: export profiled pivots as a HF `datasets.Dataset` and load them back unchanged."""

from __future__ import annotations

import json

import datasets
import pytest

from pivot_algo.pivots_dataset import (
    COLUMNS,
    PivotDatasetError,
    pivot_states,
    pivots_from_dataset,
    pivots_to_dataset,
)
from pivot_algo.policy import load_policy
from pivot_algo.profiler import ProfileConfig, StateProfile, profile, read_profile
from pivot_algo.rollout import Rollouts


def _terminal_trajectories(n=3):
    from pivot_envs import load_trajectories
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    return load_trajectories(builtin_trajectories("train")[:n])


def _rows(trajs):
    rows = []
    for t in trajs:
        for k in range(t.num_turns):
            rewards = [1.0, 0.0, 0.0] if k % 3 == 0 else ([1.0, 1.0, 1.0] if k % 3 == 1 else [0.0, 0.0, 0.0])
            mean = sum(rewards) / 3
            var = sum((r - mean) ** 2 for r in rewards) / 3
            rows.append(StateProfile(t.id, k, rewards, masked=1, tool_calls=2, messages=1, mean=mean, var=var))
    return rows


def test_round_trip_through_disk_keeps_prompt_tools_reference_and_statistics(tmp_path):
    trajs = _terminal_trajectories()
    rows = _rows(trajs)
    ds = pivots_to_dataset(rows, trajs, only_pivots=False)
    assert isinstance(ds, datasets.Dataset) and set(COLUMNS) <= set(ds.column_names) and len(ds) == len(rows)
    ds.save_to_disk(str(tmp_path / "pivots"))
    back = datasets.load_from_disk(str(tmp_path / "pivots"))
    records = pivots_from_dataset(back)
    by_id = {t.id: t for t in trajs}
    for rec, row in zip(records, rows):
        traj = by_id[row.trajectory_id]
        assert rec.state.trajectory_id == row.trajectory_id and rec.state.turn == row.turn
        assert rec.messages == traj.prefix(row.turn)
        assert rec.tools == traj.tools
        assert rec.reference == traj.reference(row.turn)
        assert rec.profile == row
        assert rec.is_pivot == row.is_pivot(0.6)
    # the readable columns hold the same conversation in one Arrow-friendly shape
    first_call = next(r for r in back if r["reference"]["tool_calls"])
    call = first_call["reference"]["tool_calls"][0]
    assert call["function"]["name"] == "bash" and "command" in json.loads(call["function"]["arguments"])
    assert [m["role"] for m in back[len(rows) - 1]["prompt"]] == [m["role"] for m in records[-1].messages]
    assert json.loads(back[0]["tools"]) == trajs[0].tools and back[0]["k"] == 4 and back[0]["masked"] == 1


def test_only_pivots_keeps_mixed_states_below_lambda():
    trajs = _terminal_trajectories(2)
    rows = _rows(trajs)
    ds = pivots_to_dataset(rows, trajs)
    expected = [r.state for r in rows if r.var > 0 and r.mean < 0.6]
    assert pivot_states(ds) == expected and all(ds["is_pivot"])
    assert len(pivots_to_dataset(rows, trajs, lambda_diff=0.3)) == 0  # 1/3 is not below 0.3


def test_a_state_of_unknown_trajectory_is_a_typed_error():
    trajs = _terminal_trajectories(1)
    with pytest.raises(PivotDatasetError, match="not among"):
        pivots_to_dataset([StateProfile("nope", 0, [1.0, 0.0], 0, 0, 0, 0.5, 0.25)], trajs)
    with pytest.raises(PivotDatasetError, match="missing"):
        pivots_from_dataset(datasets.Dataset.from_dict({"state_id": ["x"]}))


def test_a_real_profile_file_exports(adder_env, tmp_path):
    rollouts = Rollouts(load_policy("tiny"), adder_env)
    states = rollouts.states(rollouts.trajectory_ids()[:3])
    profile(rollouts, states, ProfileConfig(k=2, max_new_tokens=6), tmp_path / "p.jsonl", progress=False)
    ds = pivots_to_dataset(tmp_path / "p.jsonl", adder_env, only_pivots=False)
    assert pivot_states(ds) == [p.state for p in read_profile(tmp_path / "p.jsonl")]
    assert [len(r) for r in ds["rewards"]] == [2] * len(states)
