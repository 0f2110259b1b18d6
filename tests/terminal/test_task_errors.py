"""Bad terminal tasks fail early and say why: a task without a `test` script fails when the env is
built, naming the trajectory, where something will run the test (episodes; message turns under the
execution verifier; it was a masked verdict with a logged traceback in pivot mode and a raw KeyError in
episode mode); a setup script that fails reports its output, stdout included (it reported only stderr,
often empty)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs.errors import ReplayError, TrajectoryError


def no_test_trajectory():
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    rec = dict(builtin_trajectories("train")[0])
    rec["task"] = {k: v for k, v in rec["task"].items() if k != "test"}
    return rec


@pytest.mark.parametrize("kwargs", [{"mode": "episode"}, {}, {"message_check": "task_state"}])
def test_a_task_without_test_fails_at_construction(local_backend, kwargs):
    with pytest.raises(TrajectoryError, match=r"trajectory 'terminal-.*': the task has no 'test' script") as e:
        gym.make("PivotTerminal-v0", trajectories=[no_test_trajectory()], sandbox=local_backend, **kwargs)
    assert e.value.field == "task.test"


@pytest.mark.parametrize("kwargs", [{"verifier": "paper"}, {"verifier": "exact"}, {"message_check": "any"}])
def test_verifiers_that_never_run_the_test_accept_it(local_backend, kwargs):
    env = gym.make("PivotTerminal-v0", trajectories=[no_test_trajectory()], sandbox=local_backend, **kwargs)
    env.close()


@pytest.mark.parametrize("setup, said", [
    ("echo 'need /data/x.csv'; exit 3", r"exit 3.*stdout: need /data/x\.csv"),
    ("set -e\nfalse\n", r"exit 1.*no output"),
])
def test_a_failing_setup_reports_its_output(local_backend, setup, said):
    rec = no_test_trajectory()
    rec["task"] = dict(rec["task"], setup=setup, test="true")
    env = gym.make("PivotTerminal-v0", trajectories=[rec], sandbox=local_backend)
    try:
        with pytest.raises(ReplayError, match=said):
            env.reset(options={"trajectory": 0, "turn": 0})
    finally:
        env.close()
