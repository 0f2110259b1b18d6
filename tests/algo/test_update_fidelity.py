"""Algorithm fidelity: the clipped ratio changes the gradient exactly when the ratio leaves the band,
several update passes per batch make it engage (off by default), and re-profiling with the current
policy when pivot variance collapses. Tiny model, adder env."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pivot_algo.algorithms.base import TrainGroup
from pivot_algo.algorithms.pivotrl import PivotRL, clipped_policy_loss
from pivot_algo.config import RunConfig, load_config
from pivot_algo.pipeline import run_train
from pivot_algo.rollout import Rollouts, StartState
from pivot_algo.trainer import TrainConfig, Trainer
from pivot_envs.verdict import Verdict

from .toy_env import AdderEnv, make_trajectories


def _grad(policy, group: TrainGroup, eps_low: float, eps_high: float) -> torch.Tensor:
    policy.model.zero_grad(set_to_none=True)
    loss, _ = clipped_policy_loss(policy, [group], temperature=1.0, eps_low=eps_low, eps_high=eps_high)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in policy.model.parameters() if p.grad is not None]).clone()


def _group_with_ratio(policy, ratio: float, advantage: float) -> TrainGroup:
    """A group whose sampling log-probs are set so that every token's ratio pi/pi_old equals `ratio`."""
    prompt = policy.prompt_ids([{"role": "user", "content": "x = 3. Next: add 4"}], [])
    completions = [policy.completion_ids([{"role": "user", "content": "x = 3. Next: add 4"}],
                                         {"role": "assistant", "content": text}, []) for text in ("x+4", "7")]
    with torch.no_grad():
        out = policy.group_logprobs(prompt, completions)
    old = [[float(lp) - math.log(ratio) for lp in out.logprobs[i, : len(c)]] for i, c in enumerate(completions)]
    return TrainGroup(prompt, completions, old_logprobs=old, advantages=[advantage] * len(completions))


@pytest.mark.parametrize("ratio, advantage, clipped", [
    (1.1, 1.0, False),   # inside [0.8, 1.28]: the clip does nothing
    (0.9, -1.0, False),
    (1.5, 1.0, True),    # above the band with a positive advantage: no further push up, zero gradient
    (0.5, -1.0, True),   # below the band with a negative advantage: no further push down
    (0.5, 1.0, False),   # below the band but the advantage says "up": PPO's pessimistic max keeps it
    (1.5, -1.0, False),
])
def test_clipping_changes_the_gradient_only_outside_the_band(tiny_policy, ratio, advantage, clipped):
    group = _group_with_ratio(tiny_policy, ratio, advantage)
    g_clip = _grad(tiny_policy, group, eps_low=0.2, eps_high=0.28)
    g_free = _grad(tiny_policy, group, eps_low=0.999, eps_high=1e6)  # the band contains every ratio here
    assert g_free.abs().sum() > 0
    if clipped:
        assert torch.count_nonzero(g_clip) == 0, "a clipped token must not contribute gradient"
    else:
        torch.testing.assert_close(g_clip, g_free)


class _ParityRL(PivotRL):
    """PivotRL with a local judge that rewards completions of even token length: mixed groups from an
    untrained model, so every step updates (what is judged does not matter for these tests)."""

    def judge(self):
        return lambda texts, reference, tools: [
            Verdict.correct("even", "test") if len(t) % 2 == 0 else Verdict.wrong("odd", "test") for t in texts]


def _train(policy, tmp_path, **train_kwargs):
    env = AdderEnv(make_trajectories(range(6)))
    rollouts = Rollouts(policy, env)
    ids = rollouts.trajectory_ids()
    algo = _ParityRL(PivotRL.make_config({"pivots_per_step": 4, "group_size": 6, "max_new_tokens": 6}))
    cfg = TrainConfig(algorithm="pivotrl", steps=2, learning_rate=3e-3, output_dir=str(tmp_path), progress=False,
                      tensorboard=False, **train_kwargs)
    trainer = Trainer(cfg, policy, rollouts, ids, pivots=rollouts.states(ids), algorithm=algo)
    summary = trainer.train()
    rows = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    env.close()
    return summary, rows


def test_one_pass_per_batch_by_default_keeps_the_ratio_at_one(tiny_policy, tmp_path):
    summary, rows = _train(tiny_policy, tmp_path)
    assert summary["costs"]["optimizer_steps"] == 2
    for r in rows:
        assert r["losses/clip_frac"] == 0.0 and abs(r["losses/ratio_mean"] - 1) < 1e-3, r


def test_several_passes_per_batch_make_the_clip_engage(tiny_policy, tmp_path):
    summary, rows = _train(tiny_policy, tmp_path, update_epochs=4, minibatches=2)
    assert summary["costs"]["optimizer_steps"] == 2 * 4 * 2
    assert all(r["charts/optimizer_steps"] == 8 for r in rows)
    # After the first optimiser step of a batch the policy has moved: ratios leave 1 and get clipped.
    assert max(r["losses/clip_frac_last"] for r in rows) > 0, rows
    assert max(abs(r["losses/ratio_mean_last"] - 1) for r in rows) > 1e-3


def test_reprofile_when_pivot_variance_collapses(tiny_policy, tmp_path):
    env = AdderEnv(make_trajectories(range(4)))
    rollouts = Rollouts(tiny_policy, env)
    ids = rollouts.trajectory_ids()
    fresh = [StartState(ids[0], 1)]
    calls = []

    def reprofile():
        calls.append(1)
        return fresh

    cfg = TrainConfig(algorithm="pivotrl", steps=2, output_dir=str(tmp_path), progress=False, tensorboard=False,
                      reprofile_zero_variance_frac=0.5,
                      algorithm_config={"pivots_per_step": 2, "group_size": 2, "max_new_tokens": 4})
    # The untrained model fails every adder state: every sampled group has zero variance.
    trainer = Trainer(cfg, tiny_policy, rollouts, ids, pivots=rollouts.states(ids[1:3]), reprofile=reprofile)
    trainer.train()
    rows = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(calls) == 2 and trainer.pivots == fresh and trainer.reprofiles == 2
    assert all(r["charts/zero_variance_frac"] == 1.0 and r["charts/reprofiled"] == 1.0 for r in rows)
    # Off (the default): never re-profiled.
    calls.clear()
    cfg_off = TrainConfig(**{**cfg.__dict__, "reprofile_zero_variance_frac": 0.0, "run_name": "off"})
    Trainer(cfg_off, tiny_policy, rollouts, ids, pivots=rollouts.states(ids[1:3]), reprofile=reprofile).train()
    assert not calls
    env.close()


def test_pipeline_reprofiles_with_the_current_policy(tmp_path):
    from pivot_envs import save_jsonl

    save_jsonl(make_trajectories(range(4)), tmp_path / "adder.jsonl")
    cfg = RunConfig.from_dict(load_config("tiny", [
        f"env.id={AdderEnv.__module__}:AdderEnv", "env.kwargs={}", f"env.trajectories={tmp_path / 'adder.jsonl'}",
        "progress=false", "profile.k=2", "profile.max_new_tokens=4", "trainers.pivotrl.steps=1",
        "trainers.pivotrl.tensorboard=false", "trainers.pivotrl.reprofile_zero_variance_frac=0.5",
        "trainers.pivotrl.algorithm_config={pivots_per_step: 2, group_size: 2, max_new_tokens: 4}"]))
    ids = [f"adder-{i}" for i in range(4)]
    summary = run_train(cfg, "pivotrl", "tiny", ids, [StartState("adder-0", 0), StartState("adder-1", 0)],
                        tmp_path, "rl")
    profile_file = tmp_path / "rl" / "reprofile_1.jsonl"
    assert summary["costs"]["reprofiles"] == 1 and profile_file.exists()
    states = {(json.loads(x)["trajectory_id"], json.loads(x)["turn"]) for x in profile_file.read_text().splitlines()}
    assert len(states) == sum(3 for _ in ids)  # every training state (3 turns each) profiled again
    # The re-profile's model calls are training costs: 1 step x 2 states x G=2, plus 12 states x K=2.
    assert summary["costs"]["rollout_turns"] == 2 * 2 + 12 * 2
