"""The Ray verifier pool on a real local Ray instance (`ray.init(num_cpus=2)`) with PivotTerminal-v0
in the local (bubblewrap) sandbox: verdicts equal the in-process env's; a killed actor and a lost
sandbox backend cost no verdict and score nothing 0; a profiling driver killed with SIGKILL resumes
from its JSONL without redoing finished states.

Every test here starts Ray actors (~8 s each on 2 shared cores), so the module is `slow` (CI runs it)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import pytest

from pivot_algo.profiler import ProfileConfig, read_profile
from pivot_algo.rollout import StartState
from tests.conftest import require

pytestmark = pytest.mark.slow

ENV_ID = "PivotTerminal-v0"
ENV_KWARGS = {"sandbox": "local"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_address():
    try:
        import ray
    except ImportError:
        require(False, "ray is not installed (pip install 'pivotrl[ray]')")
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is needed by the local sandbox")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local_env():
    import pivot_envs  # noqa: F401

    env = gym.make(ENV_ID, mode="pivot", disable_env_checker=True, **ENV_KWARGS)
    yield env
    env.close()


@pytest.fixture(scope="module")
def pool(ray_address):
    from pivot_algo.distributed import VerifierPool

    p = VerifierPool(ENV_ID, ENV_KWARGS, num_actors=2, max_pending_per_actor=2, num_cpus_per_actor=0.5)
    yield p
    p.close()


def _short(env, trajectory_slice: slice):
    """Short trajectories (3-4 turns): a few states keep these tests affordable on 2 shared cores."""
    short = [t for t in env.unwrapped.trajectories if 3 <= t.num_turns <= 4]
    return short[trajectory_slice]


def _jobs(env, trajectory_slice: slice):
    from pivot_algo.distributed import FixedActions

    trajs = _short(env, trajectory_slice)
    actions = FixedActions.demonstration_variants(trajs)
    return [(StartState(t.id, k), actions(StartState(t.id, k))) for t in trajs for k in range(t.num_turns)]


def _in_process(env, jobs):
    out = []
    for state, actions in jobs:
        env.reset(options={"trajectory": state.trajectory_id, "turn": state.turn})
        out.append([(v.reward, v.masked) for v in env.unwrapped.judge_actions(actions)])
    return out


def _summary(results):
    return [[(v.reward, v.masked) for v in verdicts] for verdicts in results]


def test_pool_verdicts_equal_the_in_process_env(pool, local_env):
    jobs = _jobs(local_env, slice(0, 1))
    expected = _in_process(local_env, jobs)
    assert any(r == 1.0 for row in expected for r, _ in row) and any(r == 0.0 for row in expected for r, _ in row)
    assert not any(m for row in expected for _, m in row)
    got = pool.judge_many(jobs)
    assert _summary(got) == expected
    assert len(set(pool.actor_pids())) == 2


def test_a_killed_actor_loses_no_verdict_and_scores_nothing_zero(pool, local_env):
    jobs = _jobs(local_env, slice(1, 3))
    expected = _in_process(local_env, jobs)
    before = pool.stats.actor_deaths, pool.stats.retried_samples
    ids = [pool.submit(s, a) for s, a in jobs]
    first = pool.next_finished()
    assert first is not None
    pool.kill_actor(0)  # it has jobs in flight (2 per actor)
    results = {first[0]: first[2]}
    while len(results) < len(ids):
        got = pool.next_finished()
        assert got is not None
        results[got[0]] = got[2]
    assert _summary([results[i] for i in ids]) == expected, "a lost or infra-scored verdict"
    assert pool.stats.actor_deaths == before[0] + 1
    assert pool.stats.retried_samples > before[1], "the killed actor's jobs were re-sent"
    assert pool.stats.masked_samples == 0
    assert len(set(pool.actor_pids())) == 2, "a replacement actor serves again"


def test_a_lost_sandbox_backend_is_masked_then_retried_elsewhere(pool, local_env):
    jobs = _jobs(local_env, slice(3, 4))  # states no actor has seen (no cached snapshot or verdict)
    expected = _in_process(local_env, jobs)
    replaced = pool.stats.actors_replaced
    recovered = pool.stats.recovered_samples
    pool.lose_sandboxes(0)
    got = pool.judge_many(jobs)
    assert _summary(got) == expected, "verdicts of the broken actor must be retried, not kept as 0"
    assert pool.stats.recovered_samples > recovered, "masked samples were re-judged on a healthy actor"
    assert pool.stats.actors_replaced > replaced, "the actor with a broken backend was replaced"
    assert pool.stats.masked_samples == 0


DRIVER = textwrap.dedent('''
    import sys, ray
    ray.init(address=sys.argv[1], log_to_driver=False)
    from pivot_algo.distributed import FixedActions, VerifierPool, profile_with_pool
    from pivot_algo.profiler import ProfileConfig
    from pivot_algo.rollout import StartState
    pool = VerifierPool("PivotTerminal-v0", {"sandbox": "local"}, num_actors=2, max_pending_per_actor=1,
                        num_cpus_per_actor=0.5)
    trajs = [t for t in pool.trajectories() if 3 <= t.num_turns <= 4][4:4 + int(sys.argv[3])]
    states = [StartState(t.id, k) for t in trajs for k in range(t.num_turns)]
    profile_with_pool(pool, states, ProfileConfig(k=4), sys.argv[2], max_pending=2,
                      actions=FixedActions.demonstration_variants(trajs))
    print("finished")
''')


def test_a_killed_profiling_driver_resumes_without_redoing_finished_states(ray_address, local_env, tmp_path):
    from pivot_algo.distributed import FixedActions, VerifierPool, profile_with_pool

    n_traj = 2
    trajs = _short(local_env, slice(4, 4 + n_traj))
    states = [StartState(t.id, k) for t in trajs for k in range(t.num_turns)]
    out = tmp_path / "profile.jsonl"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), ray_address, str(out), str(n_traj)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(out.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the driver ended before it could be killed: {proc.communicate()[0][-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {(p.trajectory_id, p.turn) for p in read_profile(out)}
    assert 2 <= len(before) < len(states), "killed mid-run"

    pool = VerifierPool(ENV_ID, ENV_KWARGS, num_actors=2, num_cpus_per_actor=0.5)
    try:
        report = profile_with_pool(pool, states, ProfileConfig(k=4), out,
                                   actions=FixedActions.demonstration_variants(trajs))
        assert report.resumed_states == len(before)
        assert pool.stats.jobs == len(states) - len(before), "finished states were judged again"
    finally:
        pool.close()
    rows = read_profile(out)
    keys = [(p.trajectory_id, p.turn) for p in rows]
    assert len(keys) == len(set(keys)) == len(states), "each state exactly once"
    assert report.candidate_states == len(states) and report.masked_samples == 0

    # the same statistics as judging every state in this process
    jobs = _jobs(local_env, slice(4, 4 + n_traj))
    expected = _in_process(local_env, jobs)
    by_state = {(p.trajectory_id, p.turn): p for p in rows}
    for (state, _), row in zip(jobs, expected):
        assert by_state[(state.trajectory_id, state.turn)].rewards == [r for r, _ in row]
    assert json.loads(out.read_text().splitlines()[-1])  # the file ends with a whole line


def test_pivotrl_profile_on_the_pool_writes_what_the_in_process_profiler_writes(ray_address, tmp_path, capsys):
    """`pivotrl profile ... ray.num_actors=2`: the driver samples with the tiny policy (same per-state
    seeds), the actors judge; the file equals the in-process run's, state by state."""
    from pivot_algo import cli

    common = ["profile", "--config", "tiny", "data.max_trajectories=2", "warmup.enabled=false", "profile.k=3",
              "profile.max_new_tokens=12", "progress=false"]
    cli.main([*common, f"output_dir={tmp_path / 'local'}"])
    local = json.loads(capsys.readouterr().out)
    cli.main([*common, f"output_dir={tmp_path / 'pool'}", "ray.num_actors=2", "ray.num_cpus_per_actor=0.25"])
    pooled = json.loads(capsys.readouterr().out)
    rows = {name: {(p.trajectory_id, p.turn): p for p in read_profile(tmp_path / name / "tiny" / "profile.jsonl")}
            for name in ("local", "pool")}
    assert rows["local"] and rows["local"] == rows["pool"]
    assert pooled["samples"] == local["samples"] and pooled["masked_samples"] == 0


def test_an_env_the_actors_cannot_build_is_a_typed_error(ray_address):
    from pivot_algo.distributed import VerifierPool
    from pivot_algo.distributed.ray_pool import PoolError

    with pytest.raises(PoolError, match="could not build"):
        VerifierPool(ENV_ID, {"sandbox": "no-such-backend"}, num_actors=1, num_cpus_per_actor=0.25)
    with pytest.raises(PoolError, match="num_actors"):
        VerifierPool(ENV_ID, ENV_KWARGS, num_actors=0)


def test_a_trainer_batch_is_judged_on_the_pool(pool, local_env):
    """The TRL reward over the pool: one job per distinct state, verdicts back in completion order."""
    from pivot_algo.integrations.trl import pivot_reward

    jobs = _jobs(local_env, slice(0, 1))[:2]
    expected = _in_process(local_env, jobs)
    tids = [s.trajectory_id for s, acts in jobs for _ in acts]
    turns = [s.turn for s, acts in jobs for _ in acts]
    completions = [a for _, acts in jobs for a in acts]
    order = list(range(len(completions)))[::-1]  # interleave states: the reward must regroup them
    reward = pivot_reward(pool)
    got = reward(prompts=[None] * len(order), completions=[completions[i] for i in order],
                 trajectory_id=[tids[i] for i in order], turn=[turns[i] for i in order])
    flat = [r for row in expected for r, _ in row]
    assert got == [flat[i] for i in order]
