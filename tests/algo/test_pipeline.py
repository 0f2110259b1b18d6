"""The run pipeline and the typed presets: a run without pivots ends cleanly with a table that says
so; unknown preset keys are errors naming the key and the valid ones; costs are counted as the paper
counts them (rollout turns = model calls, sandbox executions apart). Tiny model + adder env."""

from __future__ import annotations

import json

import pytest

from pivot_algo import cli
from pivot_algo.algorithms.base import ConfigError
from pivot_algo.config import RunConfig, load_config, load_run_config
from pivot_algo.pipeline import NoPivotsError, run_train
from pivot_algo.rollout import Rollouts
from pivot_algo.trainer import TrainConfig, Trainer

from .toy_env import AdderEnv, make_trajectories


def _adder_overrides(tmp_path, n: int = 8) -> list[str]:
    from pivot_envs import save_jsonl

    save_jsonl(make_trajectories(range(n)), tmp_path / "adder.jsonl")
    return [f"env.id={AdderEnv.__module__}:AdderEnv", "env.kwargs={}", f"env.trajectories={tmp_path / 'adder.jsonl'}",
            f"output_dir={tmp_path}", "progress=false"]


def test_run_without_pivots_reports_it_and_exits_cleanly(tmp_path, capsys):
    # The untrained tiny model never writes an arithmetic expression: every profiled group is all-zero.
    rc = cli.main(["run", "--config", "tiny", *_adder_overrides(tmp_path), "warmup.enabled=false",
                   "profile.k=2", "profile.max_new_tokens=4", "eval.max_new_tokens=4", "eval.max_tasks=1",
                   "eval.pivot_samples=2", "trainers.sft.steps=1", "trainers.sft.tensorboard=false"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "pivotrl run: profiling found no pivots on the training split" in out
    assert "| PivotRL | not run: no pivots |" in out
    result = json.loads((tmp_path / "tiny" / "results.json").read_text())
    assert result["no_pivots"] is True
    assert [r["model"] for r in result["rows"]] == ["base (tiny)", "SFT", "PivotRL"]
    assert result["rows"][-1]["pivots_kept"] == 0
    assert result["rows"][-1]["rollout_turns"] > 0  # profiling still cost model calls, and is reported
    assert "profiling found no pivots" in (tmp_path / "tiny" / "results.md").read_text()


def test_train_of_a_pivot_algorithm_without_pivots_is_one_clear_line(tmp_path, capsys):
    rc = cli.main(["train", "--config", "tiny", *_adder_overrides(tmp_path), "warmup.enabled=false", "algo=pivotrl",
                   "profile.k=2", "profile.max_new_tokens=4"])
    err = capsys.readouterr().err
    assert rc == 3 and "profiling kept none" in err and "Traceback" not in err


@pytest.mark.parametrize("override, match", [
    ("trainers.pivotrl.step=4", r"unknown key\(s\) \['step'\] in trainers.pivotrl; valid keys: .*'steps'"),
    ("profile.K=4", r"unknown key\(s\) \['K'\] in profile; valid keys: \['k', 'lambda_diff'"),
    ("evaluation.max_tasks=3", r"unknown key\(s\) \['evaluation'\] in the preset's top level; valid keys: .*'eval'"),
    ("eval.max_task=3", r"\['max_task'\] in eval; valid keys: \['max_new_tokens', 'max_tasks'"),
    ("warmup.learning_rat=0.1", r"\['learning_rat'\] in warmup"),
    ("trainers.pivotrl.algorithm_config.group_sise=4", r"unknown pivotrl config key.*group_sise"),
    ("trainers.pivotrl.seed=3", r"\['seed'\] in trainers.pivotrl"),  # the pipeline sets it: not a preset key
    ("data.heldout_fraction=abc", r"data.heldout_fraction = 'abc' has the wrong type"),
    ("trainers.sft.steps=-1", r"steps must be >= 0"),
])
def test_unknown_or_bad_preset_keys_name_the_key_and_the_valid_ones(override, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config("tiny", [override])


def test_overrides_reach_the_typed_config():
    cfg = load_run_config("tiny", ["trainers.pivotrl.steps=3", "profile.k=4", "trainers.pivotrl.learning_rate=1e-3",
                                   "eval.max_tasks=2", "seed=5"])
    assert cfg.trainer("pivotrl").values["steps"] == 3 and cfg.profile.k == 4 and cfg.eval.max_tasks == 2
    assert cfg.trainer("pivotrl").values["learning_rate"] == 1e-3  # YAML's "1e-3" string read as the float
    assert cfg.profile.seed == 5  # profiling follows the run seed unless profile.seed is given
    assert cfg.warmup.enabled and cfg.warmup.trainer.values["steps"] == 25
    tc = cfg.trainer("pivotrl").train_config(seed=5, output_dir="x", run_name="r", env_name="e")
    assert isinstance(tc, TrainConfig) and tc.algorithm == "pivotrl" and tc.steps == 3


def test_every_shipped_preset_is_valid():
    from pivot_algo.config import preset_names

    for name in preset_names():
        assert isinstance(RunConfig.from_dict(load_config(name)), RunConfig), name


def test_pivot_training_counts_model_calls_as_rollout_turns(tiny_policy, tmp_path):
    env = AdderEnv(make_trajectories(range(4)))
    rollouts = Rollouts(tiny_policy, env)
    ids = rollouts.trajectory_ids()
    cfg = TrainConfig(algorithm="pivotrl_random_turns", steps=2, output_dir=str(tmp_path), progress=False,
                      tensorboard=False, algorithm_config={"pivots_per_step": 3, "group_size": 4, "max_new_tokens": 4})
    costs = Trainer(cfg, tiny_policy, rollouts, ids).train()["costs"]
    assert costs["rollout_turns"] == 2 * 3 * 4  # steps x states x G model calls
    # Sandbox executions are the env's own meter: every judged sample evaluates its action and the
    # reference's, so they are a different number from the model calls.
    assert costs["sandbox_executions"] == env.costs.rollout_turns and costs["sandbox_executions"] > 0
    assert costs["sandbox_executions"] != costs["rollout_turns"]
    assert costs["optimizer_steps"] <= 2 and costs["wall_seconds"] > 0
    env.close()


def test_run_train_refuses_a_pivot_algorithm_without_pivots(tmp_path):
    cfg = RunConfig.from_dict(load_config("tiny", _adder_overrides(tmp_path)))
    with pytest.raises(NoPivotsError, match="profiling kept none"):
        run_train(cfg, "pivotrl", "tiny", ["adder-0"], [], tmp_path, "r")


def test_the_null_control_trains_on_shuffled_rewards_of_the_same_groups(tiny_policy, tmp_path):
    # Same samples, same number of rewarded samples per group (so the same groups pass the zero-variance
    # filter), but the credit lands on random completions.
    import numpy as np

    from pivot_algo.algorithms.base import CollectContext
    from pivot_algo.algorithms.pivotrl_null_reward import PivotRLNullReward

    ctx = CollectContext(step=0, rng=np.random.default_rng(0), seed=0, rollouts=None, train_trajectory_ids=[],
                         train_states=[], pivots=[])
    rewards = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    draws = [PivotRLNullReward().group_rewards(rewards, ctx) for _ in range(20)]
    assert all(sorted(d) == sorted(rewards) for d in draws)
    assert any(not np.array_equal(d, rewards) for d in draws)
    env = AdderEnv(make_trajectories(range(4)))
    rollouts = Rollouts(tiny_policy, env)
    cfg = TrainConfig(algorithm="pivotrl_null_reward", steps=1, output_dir=str(tmp_path), progress=False,
                      tensorboard=False, algorithm_config={"pivots_per_step": 2, "group_size": 4, "max_new_tokens": 4})
    pivots = rollouts.states(rollouts.trajectory_ids())[:2]
    assert Trainer(cfg, tiny_policy, rollouts, rollouts.trajectory_ids(), pivots=pivots).train()["steps"] == 1
    env.close()
