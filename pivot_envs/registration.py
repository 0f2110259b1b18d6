"""Env registration as data: each domain package declares its `ENV_SPEC` (id, entry point, small
constructor arguments for the registry-wide contract test, the sandbox backends it runs on), and
`register_all()` registers them with Gymnasium (lazy string entry points: importing `pivot_envs`
imports no env module). A new domain is one folder whose `__init__.py` declares an `EnvSpec` and one
line in `DOMAIN_PACKAGES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

DOMAIN_PACKAGES = ("pivot_envs.domains.terminal", "pivot_envs.domains.tooluse", "pivot_envs.domains.swe")


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What a domain tells the registry about its env.

    Attributes:
        id: Gymnasium id with version (`PivotX-v0`).
        entry_point: `module:Class`, imported on first `gym.make`.
        check_kwargs: constructor arguments that keep `check_env` small and fast (a trajectory, a turn).
        sandboxes: the sandbox backends the env runs on, each checked (`sandbox=` is then passed);
            empty = the env needs no sandbox backend.
    """

    id: str
    entry_point: str
    check_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sandboxes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if ":" not in self.entry_point:
            raise ValueError(f"EnvSpec {self.id!r}: entry_point must be 'module:Class', got {self.entry_point!r}")
        object.__setattr__(self, "check_kwargs", MappingProxyType(dict(self.check_kwargs)))


def env_specs() -> list[EnvSpec]:
    """The `ENV_SPEC` of every domain package, in DOMAIN_PACKAGES order."""
    specs = []
    for name in DOMAIN_PACKAGES:
        spec = getattr(importlib.import_module(name), "ENV_SPEC", None)
        if not isinstance(spec, EnvSpec):
            raise TypeError(f"domain package {name} must declare ENV_SPEC = EnvSpec(...) in its __init__.py")
        specs.append(spec)
    return specs


def register_all() -> tuple[str, ...]:
    """Register every domain's env with Gymnasium (idempotent); return the ids."""
    from gymnasium.envs.registration import register, registry

    ids = []
    for spec in env_specs():
        if spec.id not in registry:
            register(id=spec.id, entry_point=spec.entry_point)
        ids.append(spec.id)
    return tuple(ids)
