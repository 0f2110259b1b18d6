"""benchmarks/smollm_row.py end to end with the tiny model on the adder env and a handful of OOD items:
every cell filled, intervals finite, a killed run resumes from its stage files; and the statistics
against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import smollm_row as row
from tests.algo.toy_env import AdderEnv, make_trajectories


def test_wilson_matches_hand_computed_values():
    lo, hi = row.wilson(0, 100)
    assert lo == 0.0 and hi == pytest.approx(0.0370, abs=1e-4)
    lo, hi = row.wilson(50, 100)
    assert (lo, hi) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert all(math.isnan(x) for x in row.wilson(0, 0))


def test_mcnemar_exact_counts_discordant_pairs_only():
    # 6 pairs where only a is right, 1 where only b is: p = 2 * P(X <= 1 | n=7, 1/2) = 2 * 8/128
    a = [True] * 6 + [False] + [True] * 5 + [False] * 3
    b = [False] * 6 + [True] + [True] * 5 + [False] * 3
    assert row.mcnemar_exact(a, b) == {"a_only": 6, "b_only": 1, "p": pytest.approx(0.125)}
    assert row.mcnemar_exact([True, False], [True, False])["p"] == 1.0


def test_paired_difference_pairs_by_key_and_says_when_it_is_noise():
    a = {str(i): 1.0 for i in range(40)}
    b = {str(i): 0.0 for i in range(40)}
    d = row.paired(a, b, reps=500, seed=0, binary=True)
    assert d["n"] == 40 and d["diff"] == 1.0 and not d["inside_noise"] and d["mcnemar"]["a_only"] == 40
    same = row.paired(a, {**a, "extra": 0.0}, reps=500, seed=0, binary=False)
    assert same["n"] == 40 and same["diff"] == 0.0 and same["inside_noise"]


def test_state_differences_resample_whole_trajectories():
    # Two trajectories; within each, every state moves the same way: 20 states look like 20 independent
    # draws, but there are only 2 units, and the interval must say so.
    a = {f"t{t}#{k}": 1.0 if t == 0 else 0.0 for t in range(2) for k in range(10)}
    b = {key: 0.5 for key in a}
    naive = row.paired(a, b, reps=500, seed=0, binary=False)
    clustered = row.paired(a, b, reps=500, seed=0, binary=False, cluster=row.trajectory_of)
    assert clustered["clusters"] == 2 and row.trajectory_of("t1#7") == "t1"
    assert clustered["hi"] - clustered["lo"] > naive["hi"] - naive["lo"]
    assert clustered["inside_noise"]


def _args(tmp_path: Path) -> list[str]:
    from pivot_envs import save_jsonl

    save_jsonl(make_trajectories(range(12)), tmp_path / "adder.jsonl")
    overrides = [f"env.id={AdderEnv.__module__}:AdderEnv", "env.kwargs={}",
                 f"env.trajectories={tmp_path / 'adder.jsonl'}", f"output_dir={tmp_path / 'runs'}", "name=row",
                 "model=tiny", "progress=false", "torch_threads=1",
                 "data.heldout_fraction=0.25", "data.warmup_fraction=0.5",
                 "warmup.steps=15", "warmup.learning_rate=1e-2", "warmup.algorithm_config={states_per_step: 4}",
                 "profile.k=8", "profile.max_new_tokens=6", "profile.temperature=1.5",
                 "trainers.sft.steps=2", "trainers.sft.algorithm_config={states_per_step: 4}",
                 "trainers.sft.tensorboard=false", "trainers.pivotrl.steps=2", "trainers.pivotrl.tensorboard=false",
                 "trainers.pivotrl.algorithm_config={pivots_per_step: 2, group_size: 4, max_new_tokens: 6}",
                 "eval.max_new_tokens=6", "eval.pivot_samples=4", "eval.pivot_temperature=1.5"]
    return ["--config", "tiny", "--set", *overrides, "--ood-limit", "2", "--ood-batch-size", "2",
            "--ood-tokens", "ifbench=8", "humaneval=8", "bfcl_single=8", "--bootstrap-reps", "200",
            "--results-dir", str(tmp_path / "results")]


def test_row_end_to_end_with_the_tiny_model_and_resume(tmp_path):
    args = _args(tmp_path)
    assert row.main([*args, "--stop-after", "train_sft"]) == 0  # a run "killed" after three training stages
    stage_dir = tmp_path / "runs" / "row" / "stages"
    assert {p.stem for p in stage_dir.glob("*.json")} == {"splits", "train_warmup", "profile", "train_sft"}
    sft_before = (stage_dir / "train_sft.json").read_text()

    assert row.main(args) == 0
    assert (stage_dir / "train_sft.json").read_text() == sft_before  # read back, not trained again
    result = json.loads((tmp_path / "results" / "results.json").read_text())
    assert "train_sft" not in result["stages_run_by_last_process"]
    assert "train_pivotrl" in result["stages_run_by_last_process"]
    arms = result["arms"]
    assert result["profile"]["pivots_kept"] > 0, "the warmed-up tiny model should leave pivots on the adder task"
    for arm in ("base", "start", "sft", "pivotrl"):
        r = arms[arm]
        assert r["state_reward"]["states"] == 3 * 3 and r["state_reward"]["samples"] == 9 * 4  # 3 held-out x 3 turns
        assert math.isfinite(r["state_reward"]["lo"]) and math.isfinite(r["state_reward"]["hi"])
        assert r["episode_success"]["n"] == 3
        for suite in ("ifbench", "humaneval", "bfcl_single"):
            assert r[suite]["n"] == 2 and math.isfinite(r[suite]["lo"]) and math.isfinite(r[suite]["hi"])
    # the same OOD items for every model, so the paired differences use all of them
    items = {arm: sorted(result["per_item"][arm]["_humaneval"]) for arm in arms}
    assert len({tuple(v) for v in items.values()}) == 1
    for name in ("pivotrl-sft", "sft-start", "pivotrl-start", "start-base"):
        d = result["differences"][name]
        assert {"state_reward", "episode_success", "ifbench", "humaneval", "bfcl_single", "ood_mean"} <= set(d)
        assert all(math.isfinite(v["lo"]) and math.isfinite(v["hi"]) for v in d.values())
    assert arms["pivotrl"]["train_steps"] == arms["sft"]["train_steps"] == 2  # the same step budget
    assert arms["sft"]["train_costs"]["optimizer_steps"] == 2  # (a PivotRL step whose groups all agree skips its update)
    assert arms["pivotrl"]["train_costs"]["rollout_turns"] > 0  # its profiling and group samples are model calls
    table = (tmp_path / "results" / "table.md").read_text()
    assert "not run" not in table and "| PivotRL - SFT | humaneval |" in table
