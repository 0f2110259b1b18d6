"""The optional vLLM backend must fail with an actionable error when vllm is absent."""

from __future__ import annotations

import importlib.util

import pytest

from pivot_algo.policy.errors import ModelUnavailableError


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_raises_an_actionable_error(tiny_policy):
    from pivot_algo.policy.vllm_backend import VLLMGenerator

    with pytest.raises(ModelUnavailableError, match=r"pip install 'pivotrl\[vllm\]'"):
        VLLMGenerator(tiny_policy)
