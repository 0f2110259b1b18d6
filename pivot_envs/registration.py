"""Env registration as data: each domain package declares its `ENV_SPEC` (id, entry point, the
trajectory `domain` label it reads, its verifiers by name, small constructor arguments for the
registry-wide contract test, the sandbox backends it runs on), and `register_all()` registers them
with Gymnasium (lazy string entry points: importing `pivot_envs` imports no env module). A new domain
is one folder whose `__init__.py` declares an `EnvSpec` and one line in `DOMAIN_PACKAGES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pivot_envs.errors import UnknownVerifierError

DOMAIN_PACKAGES = ("pivot_envs.domains.terminal", "pivot_envs.domains.tooluse", "pivot_envs.domains.swe")


def load_object(path: str) -> Any:
    """The object at `module:attr` (attr may be dotted: `module:Class.method`)."""
    module, _, attrs = path.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """What a domain tells the registry about its env.

    Attributes:
        id: Gymnasium id with version (`PivotX-v0`).
        entry_point: `module:Class`, imported on first `gym.make`.
        domain: the trajectories' `domain` label this env reads (`"terminal"`).
        verifiers: verifier name -> factory, as `module:callable` (imported when an env builds that
            verifier): `factory(env)` returns an object with `judge(state, action, reference)`; the
            factory reads the verifier's settings from the env (e.g. `env.message_check`).
        check_kwargs: constructor arguments that keep `check_env` small and fast (a trajectory, a turn).
        sandboxes: the sandbox backends the env runs on, each checked (`sandbox=` is then passed);
            empty = the env needs no sandbox backend.
    """

    id: str
    entry_point: str
    domain: str = ""
    verifiers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    check_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sandboxes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if ":" not in self.entry_point:
            raise ValueError(f"EnvSpec {self.id!r}: entry_point must be 'module:Class', got {self.entry_point!r}")
        if not self.domain:
            raise ValueError(f"EnvSpec {self.id!r}: domain must name the trajectories' 'domain' label")
        bad = {name: path for name, path in self.verifiers.items() if ":" not in path}
        if bad:
            raise ValueError(f"EnvSpec {self.id!r}: verifier factories must be 'module:callable', got {bad}")
        object.__setattr__(self, "check_kwargs", MappingProxyType(dict(self.check_kwargs)))
        object.__setattr__(self, "verifiers", MappingProxyType(dict(self.verifiers)))

    def build_verifier(self, env: Any, verifier: Any) -> Any:
        """The verifier named `verifier` built for `env` by its factory, or `verifier` itself when it is
        an object with `judge()`; an unknown name is an `UnknownVerifierError` listing this domain's."""
        if not isinstance(verifier, str) and hasattr(verifier, "judge"):
            return verifier
        if not isinstance(verifier, str) or verifier not in self.verifiers:
            raise UnknownVerifierError(f"{self.id} has no verifier {verifier!r}; its verifiers: "
                                       f"{', '.join(self.verifiers)} (or pass an object with judge())")
        return load_object(self.verifiers[verifier])(env)


def env_specs() -> list[EnvSpec]:
    """The `ENV_SPEC` of every domain package, in DOMAIN_PACKAGES order."""
    specs = []
    for name in DOMAIN_PACKAGES:
        spec = getattr(importlib.import_module(name), "ENV_SPEC", None)
        if not isinstance(spec, EnvSpec):
            raise TypeError(f"domain package {name} must declare ENV_SPEC = EnvSpec(...) in its __init__.py")
        specs.append(spec)
    return specs


def spec_of_domain(domain: str) -> EnvSpec:
    """The registered spec whose env reads trajectories of `domain`."""
    for spec in env_specs():
        if spec.domain == domain:
            return spec
    raise KeyError(f"no registered env for domain {domain!r}; known: {[s.domain for s in env_specs()]}")


def register_all() -> tuple[str, ...]:
    """Register every domain's env with Gymnasium (idempotent); return the ids."""
    from gymnasium.envs.registration import register, registry

    ids = []
    for spec in env_specs():
        if spec.id not in registry:
            register(id=spec.id, entry_point=spec.entry_point)
        ids.append(spec.id)
    return tuple(ids)
