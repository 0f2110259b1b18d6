"""Env registration as data: each domain declares its `ENV_SPEC` (id, entry point, the trajectory
`domain` label it reads, its verifiers by name, small constructor arguments for the registry-wide
contract test, the sandbox backends it runs on), and `register_all()` registers them with Gymnasium
(lazy string entry points: importing `pivot_envs` imports no env module). The domains known to the
trajectory format (`domains()`, `pivot_envs.trajectory.DOMAINS`) are the registered specs' labels.

Where domains come from:
- in the tree: a folder under `pivot_envs/domains/` whose `__init__.py` declares `ENV_SPEC`, named in
  `DOMAIN_PACKAGES`;
- out of the tree: any installed distribution with an entry point in the group `pivotrl.domains` whose
  object is an `EnvSpec` or a module declaring `ENV_SPEC`, e.g. in its pyproject.toml:

      [project.entry-points."pivotrl.domains"]
      toy = "toy_domain:ENV_SPEC"

  It is found when `pivot_envs` is imported (nothing in this package is edited); an entry point that
  does not load, or that clashes with a registered id or domain, is a `DomainRegistrationError`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pivot_envs.errors import DomainRegistrationError, UnknownVerifierError

DOMAIN_PACKAGES = ("pivot_envs.domains.terminal", "pivot_envs.domains.tooluse", "pivot_envs.domains.swe")
ENTRY_POINT_GROUP = "pivotrl.domains"


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


def _spec_of(obj: Any, where: str) -> EnvSpec:
    spec = getattr(obj, "ENV_SPEC", obj)
    if not isinstance(spec, EnvSpec):
        raise DomainRegistrationError(f"{where} must be an EnvSpec or a module declaring ENV_SPEC = EnvSpec(...), "
                                      f"got {type(spec).__name__}")
    return spec


def _entry_point_specs() -> list[EnvSpec]:
    from importlib.metadata import entry_points

    specs = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        where = f"entry point {ep.name} = {ep.value!r} (group {ENTRY_POINT_GROUP})"
        try:
            obj = ep.load()
        except Exception as e:
            raise DomainRegistrationError(f"{where} does not load: {type(e).__name__}: {e}") from e
        specs.append(_spec_of(obj, where))
    return specs


@functools.cache
def _all_specs() -> tuple[EnvSpec, ...]:
    specs = [_spec_of(importlib.import_module(name), f"domain package {name}") for name in DOMAIN_PACKAGES]
    for spec in _entry_point_specs():
        clash = next((s for s in specs if s.id == spec.id or s.domain == spec.domain), None)
        if clash is not None:
            raise DomainRegistrationError(f"the {ENTRY_POINT_GROUP} entry point's {spec.id} (domain {spec.domain!r}) "
                                          f"clashes with the registered {clash.id} (domain {clash.domain!r})")
        specs.append(spec)
    return tuple(specs)


def env_specs() -> list[EnvSpec]:
    """The `ENV_SPEC` of every domain: the packages of DOMAIN_PACKAGES in order, then the entry points
    of the `pivotrl.domains` group (by name). Read once per process."""
    return list(_all_specs())


def domains() -> tuple[str, ...]:
    """The trajectory `domain` labels of the registered envs (what a trajectory record may name)."""
    return tuple(spec.domain for spec in _all_specs())


def spec_of_domain(domain: str) -> EnvSpec:
    """The registered spec whose env reads trajectories of `domain`."""
    for spec in _all_specs():
        if spec.domain == domain:
            return spec
    raise KeyError(f"no registered env for domain {domain!r}; known: {list(domains())}")


def register_all() -> tuple[str, ...]:
    """Register every domain's env with Gymnasium (idempotent); return the ids."""
    from gymnasium.envs.registration import register, registry

    ids = []
    for spec in env_specs():
        if spec.id not in registry:
            register(id=spec.id, entry_point=spec.entry_point)
        ids.append(spec.id)
    return tuple(ids)


def make_env(env_id: str, **kwargs: Any) -> Any:
    """An env by id: a registered Gymnasium id (through `gym.make`, without its passive checker; the
    registry's contract test runs the full check), or `module:Class` of a PivotEnv subclass (built
    directly, e.g. one that is not registered). `kwargs` go to the constructor (`mode=...`)."""
    if ":" in env_id:
        return load_object(env_id)(**kwargs)
    import gymnasium as gym

    register_all()
    return gym.make(env_id, disable_env_checker=True, **kwargs)
