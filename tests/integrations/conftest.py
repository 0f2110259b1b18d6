"""Fixtures of the trainer-integration tests: a warmed-up tiny policy on the adder env, its profile."""

from __future__ import annotations

import pytest

from tests.algo.toy_env import AdderEnv, make_trajectories


@pytest.fixture(scope="session")
def adder_trajectories():
    return make_trajectories(range(16))


@pytest.fixture
def adder_env(adder_trajectories):
    env = AdderEnv(adder_trajectories)
    yield env
    env.close()
