"""Fixtures of the trainer-integration tests: a warmed-up tiny policy on the adder env, its profile."""

from __future__ import annotations

import pytest

from tests.algo.toy_env import make_trajectories


@pytest.fixture(scope="session")
def adder_trajectories():
    """16 tasks here (tests/conftest.py's adder_env is built on them)."""
    return make_trajectories(range(16))
