"""Shared fixtures. Backend fixtures skip locally when a backend cannot run here, but FAIL under
CI=true: CI provisions Docker and bubblewrap, so a skip there would hide a broken backend."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, why: str) -> None:
    """Skip (dev machine) or fail (CI) when a prerequisite is missing."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI must provision this: {why}")
    pytest.skip(why)


def _make(name: str):
    from pivot_envs.errors import SandboxUnavailableError
    from pivot_envs.sandbox import make_backend

    try:
        return make_backend(name)
    except SandboxUnavailableError as e:
        require(False, f"{name} sandbox backend unavailable: {e}")


@pytest.fixture(scope="session")
def docker_backend():
    be = _make("docker")
    yield be
    be.close()


@pytest.fixture(scope="session")
def local_backend():
    be = _make("local")
    yield be
    be.close()


def backend_params() -> list:
    """One pytest param per registered sandbox backend, carrying the markers its capabilities name
    (e.g. `docker`: needs a daemon), so a new backend gets the contract tests without editing them."""
    from pivot_envs.sandbox import backend_names, capabilities

    return [pytest.param(name, marks=[getattr(pytest.mark, m) for m in capabilities(name).test_markers])
            for name in backend_names()]


@pytest.fixture(params=backend_params(), scope="session")
def sandbox_backend(request):
    """Every sandbox contract test runs once per backend."""
    be = _make(request.param)
    yield be
    be.close()


@pytest.fixture(autouse=True, scope="session")
def _torch_one_thread():
    """Tests share 2 cores with sandboxes and each other: torch's default 2 threads then spin-wait and
    small models run 10-30x slower than with 1 thread (measured here)."""
    import torch

    torch.set_num_threads(1)
    yield


def pytest_collection_modifyitems(config, items):
    run_slow = os.environ.get("RUN_SLOW", "") == "1" or "slow" in (config.getoption("-m") or "")
    if run_slow:
        return
    skip = pytest.mark.skip(reason="slow test: run with RUN_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fresh_tiny():
    """A private tiny policy (built once per process and cached under $PIVOTRL_CACHE; loading it again is
    ~0.1 s): a test may train it or fill its caches without touching another test's."""
    from pivot_algo.policy import load_policy

    return load_policy("tiny")


@pytest.fixture
def tiny_policy(fresh_tiny):
    """The tiny policy, fresh per test (tests/policy/ shares one per session instead, see its conftest)."""
    return fresh_tiny


@pytest.fixture(scope="session")
def adder_trajectories():
    """The adder domain's tasks (tests/algo/toy_env.py); a folder's conftest may override how many."""
    from tests.algo.toy_env import make_trajectories

    return make_trajectories(range(12))


@pytest.fixture
def adder_env(adder_trajectories):
    from tests.algo.toy_env import AdderEnv

    env = AdderEnv(adder_trajectories)
    yield env
    env.close()
