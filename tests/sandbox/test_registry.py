"""Backends as a contract: the registry lists what can be named, each backend declares its
capabilities, and a backend from outside the package registers through the `pivotrl.sandbox_backends`
entry point group without any edit to pivot_envs: it shows up in the registry and in the command
line's choices, and an env runs on it by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401  (registers the envs)
from pivot_envs.errors import SandboxUnavailableError
from pivot_envs.sandbox import (
    ENTRY_POINT_GROUP,
    SandboxBackend,
    backend_names,
    capabilities,
    make_backend,
)
from tests.conftest import require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# An installed distribution as importlib.metadata finds it on sys.path: a dist-info dir with its
# entry points, next to the module it names. The toy backend is the local machinery under its own
# name and capabilities (what an outside package would subclass or write from scratch).
TOY_MODULE = textwrap.dedent('''
    from pivot_envs.sandbox import BackendCapabilities
    from pivot_envs.sandbox.local import LocalBackend


    class ToyBackend(LocalBackend):
        name = "toy"
        capabilities = BackendCapabilities(runs_images=False, reaps_killed_runs="as the local backend",
                                           requires="what the local backend needs")
''')


@pytest.fixture
def toy_dist(tmp_path, monkeypatch):
    """The toy backend's distribution, put on sys.path (as `pip install` would) after checking that
    nothing knew it before."""
    (tmp_path / "toy_sandbox_backend.py").write_text(TOY_MODULE)
    info = tmp_path / "toy_sandbox_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-sandbox-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = toy_sandbox_backend:ToyBackend\n")
    assert "toy" not in backend_names()
    with pytest.raises(ValueError, match="unknown sandbox backend 'toy'"):
        make_backend("toy")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtin_backends_declare_what_they_can_do():
    assert backend_names()[:2] == ("local", "docker")
    assert capabilities("docker").runs_images and not capabilities("local").runs_images
    assert capabilities("docker").keeps_processes is True and capabilities("local").keeps_processes is False
    for name in backend_names():
        caps = capabilities(name)
        assert caps.reaps_killed_runs and caps.requires, name
    with pytest.raises(ValueError, match="unknown sandbox backend 'nope'.*'docker', 'local'"):
        make_backend("nope")


def test_an_outside_backend_registers_through_an_entry_point(toy_dist):
    assert "toy" in backend_names()
    assert capabilities("toy").reaps_killed_runs == "as the local backend"

    # The command line's choices come from the registry: `--backend toy` is accepted and reaped.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_dist), REPO])}
    helped = subprocess.run([sys.executable, "-m", "pivot_algo.cli", "sandbox", "gc", "--help"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "toy" in helped.stdout, helped.stdout
    ran = subprocess.run([sys.executable, "-m", "pivot_algo.cli", "sandbox", "gc", "--backend", "toy"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0 and set(json.loads(ran.stdout.splitlines()[-1])) == {"toy"}, ran.stderr


def test_an_env_runs_on_the_outside_backend_by_name(toy_dist):
    from pivot_envs.parsing import render_bash_call
    from pivot_envs.sandboxed_env import close_shared_sandboxes

    try:  # it needs what the local backend needs (skipped on a machine without it, a failure in CI)
        make_backend("local").close()
    except SandboxUnavailableError as e:
        require(False, f"local sandbox backend unavailable: {e}")
    env = gym.make("PivotTerminal-v0", sandbox="toy", trajectory=0, reset_to_turn=1)
    try:
        env.reset()
        backend = env.unwrapped.backend
        assert isinstance(backend, SandboxBackend) and backend.name == "toy"
        assert type(backend).__module__ == "toy_sandbox_backend"
        _, reward, _, _, info = env.step(render_bash_call("ls"))
        assert reward in (0.0, 1.0) and not info.get("masked"), info
    finally:
        env.close()
        close_shared_sandboxes()


def test_declared_keeps_processes_matches_what_the_backend_does(sandbox_backend):
    """The declaration saves a probe (pivot_envs/processes.py); the probe, run here, must agree."""
    from pivot_envs.processes import keeps_processes

    class Undeclared:  # the same backend with no capabilities to read: keeps_processes probes it
        def __init__(self, backend):
            self.create = backend.create

    assert keeps_processes(Undeclared(sandbox_backend)) is sandbox_backend.capabilities.keeps_processes
