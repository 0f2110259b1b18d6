"""Typed errors of the policy layer. Each message says what was wrong and what to do."""

from __future__ import annotations

from pivot_envs.errors import PivotError


class PolicyError(PivotError, RuntimeError):
    """Base class of the policy layer's errors."""


class ModelUnavailableError(PolicyError):
    """A model spec cannot be loaded here (package missing, unknown spec, missing files)."""


class ChatTemplateError(PolicyError, ValueError):
    """A conversation cannot be rendered, or its rendering does not tokenize as a prefix of the
    full conversation (the property training relies on)."""
