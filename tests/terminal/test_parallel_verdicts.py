"""A group's sampled actions judged in parallel forks (`verdict_workers` > 1) get the verdicts of
judging them one after another: the same verdicts in the same order, the same costs (so the state's
reference runs ran once, not once per thread), with forks really overlapping. Both backends.

Cost: local ~2-4 s (2 x 13 forks), docker ~10-20 s (2 x 9 containers) on the loaded 2-core machine."""

from __future__ import annotations

import threading

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs.base_env import pivot_env
from pivot_envs.parsing import render_bash_call
from pivot_envs.sandboxed_env import release_shared_sandbox, shared_sandbox
from tests.terminal.test_verifier import traj_with_reference

REFERENCE = "sed -i 's/foo/bar/g' notes.txt"
# distinct actions: equivalent ones, wrong ones of each kind, a message, garbage, the demonstration
# itself (not executed), and repeats (judged through the verdict cache after the parallel part)
ACTIONS = [
    render_bash_call("python3 -c \"p='notes.txt'; s=open(p).read(); open(p,'w').write(s.replace('foo','bar'))\""),
    render_bash_call("sed -i 's/foo/bar/' notes.txt"),
    render_bash_call(f"true; {REFERENCE}"),
    render_bash_call("echo hi > greeting"),
    render_bash_call("grep nothing-here notes.txt"),
    "I am done.",
    render_bash_call(REFERENCE),
    render_bash_call("rm a.txt"),
    "<tool_call>{not json",
    render_bash_call(f"{REFERENCE} ; cat notes.txt"),
    render_bash_call("sed -i 's/foo/bar/' notes.txt"),
    render_bash_call("sed -s -i 's/foo/bar/g' notes.txt"),
    render_bash_call("echo hi > greeting"),
]
DOCKER_ACTIONS = ACTIONS[:7] + ACTIONS[10:11]  # fewer containers: ~0.3-1 s each here


def judge_group(backend: str, actions: list, workers: int) -> tuple[list, dict, int]:
    """Verdicts of `actions` at the reference's state by a fresh env (no cached verdicts or reference
    runs), its costs, and the most forks that were open at once."""
    env = gym.make("PivotTerminal-v0", trajectories=[traj_with_reference(REFERENCE)], sandbox=backend,
                   trajectory=0, reset_to_turn=0, verdict_workers=workers)
    core = pivot_env(env)
    open_now, most, lock = [0], [0], threading.Lock()
    fork_state = core.fork_state

    class Counted:
        """A fork of the state that counts itself open until closed."""

        def __init__(self, state):
            self.box = fork_state(state)
            with lock:
                open_now[0] += 1
                most[0] = max(most[0], open_now[0])

        def __getattr__(self, name):
            return getattr(self.box, name)

        def close(self, wait=True):
            with lock:
                open_now[0] -= 1
            self.box.close(wait=wait)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    try:
        env.reset()
        core.fork_state = Counted  # type: ignore[method-assign]  (instance-level: counts this env's forks)
        before = core.costs.as_dict()
        judged = core.judge_actions(actions)
        costs = {k: v - before[k] for k, v in core.costs.as_dict().items() if k != "sandbox_seconds"}
        verdicts = [v.to_dict() for v in judged]
        return verdicts, costs, most[0]
    finally:
        env.close()


@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_parallel_verdicts_equal_sequential_ones(backend):
    from tests.conftest import _make

    _make(backend).close()  # skips (dev) / fails (CI) when the backend cannot run here
    actions = ACTIONS if backend == "local" else DOCKER_ACTIONS
    shared_sandbox(backend, user=True)  # one backend and state snapshot for both envs
    try:
        seq, seq_costs, seq_open = judge_group(backend, actions, 1)
        par, par_costs, par_open = judge_group(backend, actions, 4)
    finally:
        release_shared_sandbox(backend)
    assert par == seq
    rewards = [v["reward"] for v in seq]
    assert rewards.count(1.0) >= 3 and rewards.count(0.0) >= 3, seq  # a real mix
    assert not any(v["failure_kind"] for v in seq), seq
    # the same work: the reference ran once (base + 2 runs), each distinct executed action once
    assert par_costs == seq_costs, (par_costs, seq_costs)
    assert seq_costs["verdict_cache_hits"] == len(actions) - len(set(actions))
    # one after another: at most an action's fork and the two reference runs (compared side by side)
    # are open together; in parallel the workers' forks overlap too
    assert seq_open <= 3 and par_open >= 4, (seq_open, par_open)


def test_verdict_workers_is_checked():
    with pytest.raises(ValueError, match="verdict_workers"):
        gym.make("PivotTerminal-v0", trajectories=[traj_with_reference(REFERENCE)], sandbox="local", verdict_workers=0)
