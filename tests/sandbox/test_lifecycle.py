"""Lifecycle as a contract: when the last env of a process closes, nothing of the project is left on
the host, on every backend: no state dir, mount, loop device, cgroup, container, snapshot image or
process of the run. Checked from inside the process right after the last `close()` (not at exit),
next to the count while an env is still open (so the check can see leftovers), and again after
`pivot_envs.close_all()` for envs that were never closed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import backend_params, require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import json, sys
import gymnasium as gym
import pivot_envs
from pivot_envs.domains.terminal.tasks import builtin_trajectories
from pivot_envs.parsing import render_bash_call
from tests.sandbox.leftovers import leftovers

name = sys.argv[1]
trajs = builtin_trajectories("train")[:2]

envs = [gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=name, trajectory=i, reset_to_turn=1) for i in range(2)]
episode = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=name, mode="episode", trajectory=0)
for e in envs + [episode]:
    e.reset()
    e.step(render_bash_call("(sleep 30 &) ; echo hi > made.txt; ls"))
backend = envs[0].unwrapped.backend
assert all(e.unwrapped.backend is backend for e in envs + [episode]), "envs of one process share the backend"
root = backend.root
for e in envs:
    e.close()
report = {"while_open": leftovers(root)}
episode.close()
report["after_last_close"] = leftovers(root)
# Envs that are never closed: pivot_envs.close_all() releases what they hold.
stray = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=name, trajectory=1, reset_to_turn=1)
stray.reset()
stray.step(render_bash_call("echo again"))
root = stray.unwrapped.backend.root
pivot_envs.close_all()
report["after_close_all"] = leftovers(root)
print(json.dumps(report), flush=True)
"""


@pytest.mark.parametrize("backend_name", backend_params())
def test_nothing_of_the_run_remains_after_the_last_env_closes(backend_name):
    from pivot_envs.errors import SandboxUnavailableError
    from pivot_envs.sandbox import make_backend

    try:
        make_backend(backend_name).close()
    except SandboxUnavailableError as e:
        require(False, f"{backend_name} backend unavailable: {e}")
    proc = subprocess.run([sys.executable, "-c", CHILD, backend_name], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(backend_name, report)  # the counts of the issue note (pytest -s)
    assert report["while_open"]["state_dirs"] >= 1 and sum(report["while_open"].values()) > 1, report
    assert not any(report["after_last_close"].values()), report
    assert not any(report["after_close_all"].values()), report
