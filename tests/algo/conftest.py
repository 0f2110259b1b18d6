"""Fixtures of the algorithm tests: the tiny policy and the adder env (tests/algo/toy_env.py)."""

from __future__ import annotations

import pytest
import torch

from .toy_env import AdderEnv, make_trajectories


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Other processes share the 2 cores: torch's 2 threads then spin-wait, ~10x slower than 1 thread.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_policy():
    from pivot_algo.policy import load_policy

    return load_policy("tiny")


@pytest.fixture
def adder_env():
    env = AdderEnv(make_trajectories(range(12)))
    yield env
    env.close()
