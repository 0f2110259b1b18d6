"""The policy layer: the Policy contract (base.py), the Hugging Face backend (hf.py), the tool-aware
chat template (chat_template.py) and the model factory (models.py)."""

from pivot_algo.policy.base import Completion, GroupLogprobs, Policy
from pivot_algo.policy.errors import (
           ChatTemplateError,
           ModelUnavailableError,
           PolicyError,
)
from pivot_algo.policy.hf import HFPolicy
from pivot_algo.policy.models import build_tiny_policy, cache_root, load_policy

__all__ = [
           "ChatTemplateError",
           "Completion",
           "GroupLogprobs",
           "HFPolicy",
           "ModelUnavailableError",
           "Policy",
           "PolicyError",
           "build_tiny_policy",
           "cache_root",
           "load_policy",
]
