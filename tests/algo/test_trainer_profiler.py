"""Trainer exact resume, profiler resume, whole-episode E2E GRPO, and the CLI on the tiny model."""

from __future__ import annotations

import json

import pytest

from pivot_algo import cli
from pivot_algo.algorithms.base import ConfigError
from pivot_algo.policy import load_policy
from pivot_algo.profiler import ProfileConfig, profile, read_profile
from pivot_algo.rollout import Rollouts
from pivot_algo.trainer import TrainConfig, Trainer, latest_checkpoint

from .toy_env import AdderEnv, make_trajectories


def _sft_trainer(tmp_path, resume_from=None, steps=3):
    policy = load_policy("tiny")
    env = AdderEnv(make_trajectories(range(12)))
    rollouts = Rollouts(policy, env)
    cfg = TrainConfig(algorithm="sft", algorithm_config={"states_per_step": 5}, steps=steps, learning_rate=3e-3,
                      grad_accum=2, checkpoint_every=2, output_dir=str(tmp_path), run_name="run",
                      progress=False, tensorboard=True, seed=7)
    return Trainer(cfg, policy, rollouts, rollouts.trajectory_ids(), resume_from=resume_from)


def _losses(trainer):
    return [json.loads(x)["losses/loss"] for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]


def test_checkpoint_resume_gives_the_same_next_step_loss(tmp_path):
    full = _sft_trainer(tmp_path / "a")
    full.train()
    uninterrupted = _losses(full)
    assert len(uninterrupted) == 3 and uninterrupted[2] != uninterrupted[1]
    assert list((full.run_dir / "tb").iterdir()), "TensorBoard events written"

    # A run "killed" after its step-2 checkpoint: a fresh process state (new policy, env, trainer).
    part = _sft_trainer(tmp_path / "b", steps=2)
    part.train()
    ckpt = latest_checkpoint(part.run_dir)
    assert ckpt is not None and ckpt.name == "step_000002.pt"
    del part
    resumed = _sft_trainer(tmp_path / "b", resume_from=ckpt)
    assert resumed.step == 2
    resumed.train()
    losses = _losses(resumed)
    assert len(losses) == 3
    assert abs(losses[2] - uninterrupted[2]) < 1e-6, (losses, uninterrupted)
    assert resumed.costs(0)["trained_tokens"] == full.costs(0)["trained_tokens"]


def test_profiler_resumes_where_it_stopped(tiny_policy, adder_env, tmp_path):
    rollouts = Rollouts(tiny_policy, adder_env)
    states = rollouts.states(rollouts.trajectory_ids()[:4])
    cfg = ProfileConfig(k=4, max_new_tokens=8, seed=3)
    path = tmp_path / "profile.jsonl"
    first = profile(rollouts, states, cfg, path, progress=False, max_states=5)  # "interrupted" after 5 states
    assert first.candidate_states == 5 and len(read_profile(path)) == 5
    with path.open("a") as fh:
        fh.write('{"trajectory_id": "adder-3", "tu')  # a write cut off by the kill
    samples_before = rollouts.samples
    second = profile(rollouts, states, cfg, path, progress=False)
    assert second.resumed_states == 5 and second.candidate_states == len(states)
    assert rollouts.samples - samples_before == (len(states) - 5) * 4, "finished states were not sampled again"
    # Same per-state results as one uninterrupted run.
    whole = profile(Rollouts(tiny_policy, AdderEnv(make_trajectories(range(12)))), states, cfg, tmp_path / "w.jsonl",
                    progress=False)
    by_state = lambda rows: {(r.trajectory_id, r.turn): r for r in rows}
    assert by_state(read_profile(path)) == by_state(read_profile(tmp_path / "w.jsonl"))
    assert whole.samples == len(states) * 4 and 0 <= whole.cache_hit_rate <= 1 and whole.verdicts_per_s > 0


def test_e2e_grpo_runs_whole_episodes(tiny_policy, tmp_path):
    env = AdderEnv(make_trajectories(range(6)))
    rollouts = Rollouts(tiny_policy, env, episode_env_factory=lambda: AdderEnv(make_trajectories(range(6)),
                                                                               mode="episode", max_turns=4))
    cfg = TrainConfig(algorithm="e2e_grpo", algorithm_config={"tasks_per_step": 2, "group_size": 2, "max_new_tokens": 8},
                      steps=2, output_dir=str(tmp_path), progress=False, tensorboard=False)
    trainer = Trainer(cfg, tiny_policy, rollouts, rollouts.trajectory_ids())
    summary = trainer.train()
    rows = [json.loads(x) for x in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    # Episodes start at turn 0 and go on past one turn (3 user instructions per task, max_turns 4).
    assert all(r["charts/episode_turns_mean"] > 1 for r in rows)
    assert summary["costs"]["rollout_turns"] > 0 and summary["costs"]["generated_tokens"] > 0
    ep_costs = sum(e.unwrapped.costs.model_turns for e in rollouts._episode_envs)
    assert ep_costs == 2 * 2 * 2 * rows[0]["charts/episode_turns_mean"] or ep_costs > 8


def test_cli_profile_on_the_adder_env(tmp_path, capsys):
    from pivot_envs import save_jsonl

    env_id = f"{AdderEnv.__module__}:AdderEnv"
    save_jsonl(make_trajectories(range(8)), tmp_path / "adder.jsonl")
    cli.main(["profile", "--config", "tiny", f"env.id={env_id}", "env.kwargs={}",
              f"env.trajectories={tmp_path / 'adder.jsonl'}", f"output_dir={tmp_path}",
              "profile.k=2", "profile.max_new_tokens=6", "progress=false", "warmup.enabled=false"])
    out = json.loads(capsys.readouterr().out)
    assert out["candidate_states"] == 8 * 3 and out["samples"] == 8 * 3 * 2
    assert (tmp_path / "tiny" / "profile.jsonl").exists()


def test_profiler_batches_states_and_writes_the_same_file(tiny_policy, tmp_path):
    """states_per_call=16 (all 12 states, 4 trajectories, in one generate call) vs 1 (one call per
    state, as the Ray profiler samples): the same lines; and a run stopped in the middle of a trajectory resumes
    to the same file."""
    from pivot_algo.profiler import state_batches

    states_of = lambda r: r.states(r.trajectory_ids()[:4])
    rollouts = Rollouts(tiny_policy, AdderEnv(make_trajectories(range(12))))
    states = states_of(rollouts)
    assert [len(b) for b in state_batches(states, 16)] == [12]
    assert [len(b) for b in state_batches(states, 5)] == [5, 5, 2]
    calls: list[int] = []
    samples: dict[int, dict] = {16: {}, 1: {}}
    real_generate = tiny_policy.generate

    def counting_generate(prompts, *args, **kwargs):
        calls.append(len(prompts))
        out = real_generate(prompts, *args, **kwargs)
        for p, g in zip(prompts, out):
            samples[states_per_call][tuple(p)] = [c.token_ids for c in g]
        return out

    rows = {}
    for states_per_call in (16, 1):
        calls.clear()
        cfg = ProfileConfig(k=4, max_new_tokens=8, seed=3, temperature=1.3, states_per_call=states_per_call)
        rollouts.policy.generate = counting_generate  # type: ignore[method-assign]
        try:
            profile(rollouts, states, cfg, tmp_path / f"b{states_per_call}.jsonl", progress=False)
        finally:
            del rollouts.policy.generate
        assert calls == ([12] if states_per_call == 16 else [1] * 12)
        rows[states_per_call] = read_profile(tmp_path / f"b{states_per_call}.jsonl")
    assert rows[16] == rows[1] and len(rows[16]) == 12
    assert samples[16] == samples[1] and len(samples[16]) == 12  # token for token, not only the rewards
    cfg = ProfileConfig(k=4, max_new_tokens=8, seed=3, temperature=1.3)
    part = tmp_path / "part.jsonl"
    profile(rollouts, states, cfg, part, progress=False, max_states=5)  # stops after turn 1 of the 2nd trajectory
    resumed = profile(rollouts, states, cfg, part, progress=False)
    assert resumed.resumed_states == 5 and read_profile(part)[5:] == rows[16][5:] and read_profile(part)[:5] == rows[16][:5]
    with pytest.raises(ConfigError, match="states_per_call"):
        ProfileConfig(states_per_call=0)


def test_the_sampler_key_reaches_the_policy(tmp_path):
    """`sampler=legacy` (how the main job's before/after is timed) selects the old sampling path."""
    from pivot_algo.config import load_run_config
    from pivot_algo.pipeline import close_rollouts, make_rollouts

    env_id = f"{AdderEnv.__module__}:AdderEnv"
    from pivot_envs import save_jsonl

    save_jsonl(make_trajectories(range(2)), tmp_path / "adder.jsonl")
    overrides = [f"env.id={env_id}", "env.kwargs={}", f"env.trajectories={tmp_path / 'adder.jsonl'}"]
    policy = load_policy("tiny")
    for sampler, engine in (("legacy", "legacy"), ("shared_prefix", "shared_prefix")):
        cfg = load_run_config("tiny", [*overrides, f"sampler={sampler}"])
        rollouts = make_rollouts(cfg, policy)
        close_rollouts(rollouts)
        assert policy.engine == engine and (policy.prefix_cache.max_entries == 0) == (sampler == "legacy")
    with pytest.raises(ConfigError, match="sampler must be"):
        load_run_config("tiny", ["sampler=fast"])
