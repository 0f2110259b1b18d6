"""Registry, plug-in algorithms, config validation, and the pure pieces (advantages, exact match)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import pivot_algo
from pivot_algo.algorithms import UnknownAlgorithmError
from pivot_algo.algorithms.base import Algorithm, Batch, ConfigError, TrainGroup
from pivot_algo.algorithms.e2e_grpo import E2EGRPOConfig
from pivot_algo.algorithms.pivotrl import PivotRLConfig, group_advantages
from pivot_algo.algorithms.pivotrl_exact_match import exact_match_judge
from pivot_algo.algorithms.sft import SFTConfig
from pivot_algo.cli import load_config
from pivot_algo.profiler import ProfileConfig
from pivot_algo.rollout import Rollouts
from pivot_algo.trainer import TrainConfig, Trainer


def test_builtin_algorithms_are_listed():
    assert set(pivot_algo.list_algorithms()) >= {"pivotrl", "sft", "e2e_grpo", "pivotrl_random_turns",
                                                 "pivotrl_exact_match", "pivotrl_null_reward"}
    assert pivot_algo.get_algorithm("pivotrl").needs_pivots
    assert not pivot_algo.get_algorithm("pivotrl_random_turns").needs_pivots


def test_unknown_algorithm_names_the_registered_ones():
    with pytest.raises(UnknownAlgorithmError, match="registered: .*pivotrl"):
        pivot_algo.get_algorithm("nope")


def test_register_rejects_non_algorithms_and_name_clashes():
    with pytest.raises(TypeError, match="subclass"):
        pivot_algo.register_algorithm("x")(object)

    class Other(Algorithm):
        def collect(self, ctx): ...
        def loss(self, policy, batch): ...

    with pytest.raises(ValueError, match="already registered"):
        pivot_algo.register_algorithm("sft")(Other)


# --- a plug-in algorithm defined outside the package -------------------------------------------

@dataclasses.dataclass
class LastTurnConfig:
    states_per_step: int = 4
    """Final turns per step."""


@pivot_algo.register_algorithm("test_last_turn_sft")
class LastTurnSFT(Algorithm):
    """Supervised learning on the final (report) turn of each trajectory only."""

    Config = LastTurnConfig

    def collect(self, ctx):
        finals = [s for s in ctx.train_states
                  if s.turn == ctx.rollouts.trajectory(s.trajectory_id).num_turns - 1]
        picks = ctx.rng.choice(len(finals), size=min(self.config.states_per_step, len(finals)), replace=False)
        groups = []
        for i in picks:
            prompt, target = ctx.rollouts.demonstration(finals[i])
            groups.append(TrainGroup(prompt, [target]))
        return Batch(groups, {"charts/finals": float(len(finals))})

    def loss(self, policy, batch):
        nll, n = torch.zeros(()), 0
        for g in batch.groups:
            out = policy.group_logprobs(g.prompt_ids, g.completions)
            nll = nll - (out.logprobs * out.mask).sum()
            n += int(out.mask.sum())
        return nll / n, {}


def test_plugin_algorithm_trains_through_the_trainer(tiny_policy, adder_env, tmp_path):
    assert "test_last_turn_sft" in pivot_algo.list_algorithms()
    rollouts = Rollouts(tiny_policy, adder_env)
    ids = rollouts.trajectory_ids()
    cfg = TrainConfig(algorithm="test_last_turn_sft", algorithm_config={"states_per_step": 4}, steps=6,
                      learning_rate=3e-3, output_dir=str(tmp_path), progress=False, tensorboard=False)
    trainer = Trainer(cfg, tiny_policy, rollouts, ids)
    summary = trainer.train()
    lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6 and summary["steps"] == 6
    import json
    losses = [json.loads(x)["losses/loss"] for x in lines]
    assert losses[-1] < losses[0] - 0.5, losses  # it learns the report turn
    assert summary["costs"]["trained_tokens"] > 0
    assert json.loads((trainer.run_dir / "config.json").read_text())["algorithm"]["name"] == "test_last_turn_sft"


# --- config validation -------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: PivotRLConfig(group_size=1), "group_size must be >= 2"),
    (lambda: PivotRLConfig(group_size=2, leave_one_out=True), "leave_one_out=True needs group_size >= 3"),
    (lambda: PivotRLConfig(eps_low=1.5), "eps_low=1.5"),
    (lambda: PivotRLConfig(temperature=0), "temperature must be > 0"),
    (lambda: PivotRLConfig(kl_coef=-1), "kl_coef must be >= 0"),
    (lambda: SFTConfig(states_per_step=0), "states_per_step must be >= 1"),
    (lambda: E2EGRPOConfig(group_size=1), "group_size must be >= 2"),
    (lambda: ProfileConfig(k=1), "k >= 2"),
    (lambda: ProfileConfig(lambda_diff=0), "lambda_diff must be in"),
    (lambda: TrainConfig(grad_accum=0), "grad_accum must be >= 1, got 0"),
    (lambda: TrainConfig(learning_rate=0), "learning_rate must be > 0"),
    (lambda: pivot_algo.get_algorithm("pivotrl").make_config({"group_sise": 4}), "unknown pivotrl config key.*group_sise"),
    (lambda: load_config("tiny", ["no_equals_sign"]), "must look like key.path=value"),
    (lambda: load_config("no-such-preset"), "not found"),
])
def test_config_errors_quote_the_values(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_pivot_algorithm_without_pivots_says_to_profile(tiny_policy, adder_env, tmp_path):
    cfg = TrainConfig(algorithm="pivotrl", steps=1, output_dir=str(tmp_path), progress=False, tensorboard=False)
    with pytest.raises(ConfigError, match="profile first"):
        Trainer(cfg, tiny_policy, Rollouts(tiny_policy, adder_env), ["adder-0"])


def test_cli_overrides_set_dotted_paths():
    cfg = load_config("tiny", ["trainers.pivotrl.steps=3", "env.id=x:Y", "profile.k=4"])
    assert cfg["trainers"]["pivotrl"]["steps"] == 3 and cfg["env"]["id"] == "x:Y" and cfg["profile"]["k"] == 4


# --- advantages and the exact-match reward -----------------------------------------------------

@pytest.mark.parametrize("rewards, scale, loo, expected", [
    ([1, 0, 0, 0], False, False, [0.75, -0.25, -0.25, -0.25]),
    ([1, 0, 0, 0], True, False, [0.75 / np.sqrt(0.1875), -0.25 / np.sqrt(0.1875)] + [-0.25 / np.sqrt(0.1875)] * 2),
    ([1, 0, 0, 0], False, True, [1.0, -1 / 3, -1 / 3, -1 / 3]),
    ([1, 1, 0, 0], False, False, [0.5, 0.5, -0.5, -0.5]),
])
def test_group_advantages(rewards, scale, loo, expected):
    got = group_advantages(np.array(rewards, dtype=float), scale_std=scale, leave_one_out=loo)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


BASH = [{"type": "function", "function": {"name": "bash", "parameters": {}}}]
REF_CALL = {"role": "assistant", "content": "list", "tool_calls": [
    {"type": "function", "function": {"name": "bash", "arguments": '{"command": "ls -la"}'}}]}


@pytest.mark.parametrize("text, reference, expected", [
    ('<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la"}}\n</tool_call>', REF_CALL, 1.0),
    ('other words <tool_call>{"arguments": {"command": "ls -la"}, "name": "bash"}</tool_call>', REF_CALL, 1.0),
    ('<tool_call>{"name": "bash", "arguments": {"command": "ls -al"}}</tool_call>', REF_CALL, 0.0),  # same effect, not exact
    ('<tool_call>{"name": "bash", "arguments": {"command": "ls -la"}', REF_CALL, 0.0),  # not closed
    ("ls -la", REF_CALL, 0.0),
    ("Done.", {"role": "assistant", "content": "Done."}, 1.0),
    ("Done!", {"role": "assistant", "content": "Done."}, 0.0),
    ("", {"role": "assistant", "content": ""}, 0.0),  # an empty reply never earns reward, even vs an empty demo
    ("  \n", {"role": "assistant", "content": None}, 0.0),
])
def test_exact_match_judge(text, reference, expected):
    (v,) = exact_match_judge([text], reference, BASH)
    assert v.reward == expected, v.reason
    assert v.method == "exact" and not v.masked
