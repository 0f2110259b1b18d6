"""TRL glue: `trl.GRPOTrainer` trains the tiny model on pivots with our verifier as its reward
(two lines of glue), and a masked infra failure reaches TRL as `None`, never 0."""

from __future__ import annotations

import shutil

import gymnasium as gym
import pytest
import torch

from pivot_algo.integrations.trl import pivot_reward, trl_dataset
from pivot_algo.pivots_dataset import pivots_to_dataset
from pivot_algo.policy import load_policy
from pivot_algo.profiler import ProfileConfig, profile
from pivot_algo.rollout import Rollouts
from pivot_algo.trainer import TrainConfig, Trainer
from tests.conftest import require


def _warm_tiny_policy(env, trajectory_ids, out_dir):
    """The random tiny model never answers the adder task: a short SFT warm-up gives it mixed outcomes."""
    policy = load_policy("tiny")
    rollouts = Rollouts(policy, env)
    Trainer(TrainConfig(algorithm="sft", algorithm_config={"states_per_step": 8}, steps=25, learning_rate=3e-3,
                        output_dir=str(out_dir), progress=False, tensorboard=False), policy, rollouts,
            trajectory_ids).train()
    return policy, rollouts


@pytest.mark.slow
def test_grpo_trainer_trains_on_pivots_with_the_pivot_reward(adder_env, tmp_path):
    import trl
    from transformers import AutoTokenizer

    ids = [t.id for t in adder_env.trajectories]
    policy, rollouts = _warm_tiny_policy(adder_env, ids[:8], tmp_path)
    report = profile(rollouts, rollouts.states(ids[8:]), ProfileConfig(k=8, max_new_tokens=8), tmp_path / "p.jsonl",
                     progress=False)
    assert report.pivots_kept >= 2, report.summary()
    model_dir = tmp_path / "start"
    policy.save(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pivots = pivots_to_dataset(tmp_path / "p.jsonl", adder_env)

    # -- the two lines of glue (README "Use with your trainer")
    reward = pivot_reward(adder_env)
    trainer = trl.GRPOTrainer(model=str(model_dir), reward_funcs=reward, train_dataset=trl_dataset(pivots, tokenizer),
                              processing_class=tokenizer,
                              args=trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), max_steps=2, learning_rate=1e-3,
                                                  per_device_train_batch_size=8, num_generations=8,
                                                  max_completion_length=8, temperature=1.0, beta=0.0,
                                                  logging_steps=1, save_strategy="no", report_to="none",
                                                  use_cpu=True, bf16=False, seed=0, dataloader_num_workers=0))
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "two GRPO steps on pivots left every weight unchanged"
    assert reward.judge.samples >= 2 * 8, "TRL called our reward for every completion"
    logged = [h for h in trainer.state.log_history if "rewards/pivot_verifier/mean" in h]
    assert len(logged) == 2, trainer.state.log_history
    assert any(0 < h["rewards/pivot_verifier/mean"] < 1 for h in logged), logged


def test_a_masked_verdict_reaches_trl_as_none(tmp_path):
    """A real infra failure: the env's sandbox backend is gone (closed) before the second call."""
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is needed by the local sandbox")
    import pivot_envs  # noqa: F401
    from pivot_envs.sandbox import make_backend

    backend = make_backend("local")
    env = gym.make("PivotTerminal-v0", sandbox=backend, disable_env_checker=True)
    try:
        trajs = env.unwrapped.trajectories
        ref = trajs[0].reference(0)
        reward = pivot_reward(env)
        # TRL's call: prompts, completions (conversational here), then every dataset column by name
        got = reward(prompts=[[{"role": "user", "content": "x"}]] * 2,
                     completions=[[ref], [{"role": "assistant", "content": "Done."}]],
                     completion_ids=[[1], [2]], trajectory_id=[trajs[0].id] * 2, turn=[0, 0], state_id=["a", "a"],
                     trainer_state=None)
        assert got == [1.0, 0.0]
        backend.close()  # the sandboxes are lost
        got = reward(prompts=["p"], completions=["Done."], trajectory_id=[trajs[1].id], turn=[1])
        assert got == [None], reward.last_verdicts
        assert reward.last_verdicts[0].failure_kind is not None
    finally:
        env.close()
