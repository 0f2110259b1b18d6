"""Fixtures of the SWE tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def instances():
    """The generated instances (pivot_envs/domains/swe/data), read once per test module."""
    from pivot_envs.domains.swe.generator import load_instances

    return load_instances()
