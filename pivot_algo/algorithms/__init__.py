"""The algorithm registry.

An algorithm is a class (subclass of `pivot_algo.algorithms.base.Algorithm`) with a config dataclass
`Config`; it is registered under a name with `@register_algorithm(name)`. The built-in algorithms
are imported lazily the first time the registry is read, so `import pivot_algo` stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pivot_envs.errors import PivotError

if TYPE_CHECKING:
    from pivot_algo.algorithms.base import Algorithm

# Built-in algorithms: one module each, imported on first use of the registry.
_BUILTIN_MODULES = ("pivotrl", "sft", "e2e_grpo", "pivotrl_random_turns", "pivotrl_exact_match",
                    "pivotrl_null_reward")

_REGISTRY: dict[str, type[Algorithm]] = {}
_builtins_loaded = False

T = TypeVar("T", bound=type)


class UnknownAlgorithmError(PivotError, KeyError):
    """`get_algorithm(name)` names no registered algorithm."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for mod in _BUILTIN_MODULES:
            importlib.import_module(f"pivot_algo.algorithms.{mod}")


def register_algorithm(name: str) -> Callable[[T], T]:
    """Class decorator: make an `Algorithm` subclass available as `name` (trainer, CLI, presets).

    Registering a name twice with a different class is an error (it would silently change what a
    preset runs); re-registering the same class (module reload) is allowed."""

    def deco(cls: T) -> T:
        from pivot_algo.algorithms.base import Algorithm

        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise TypeError(f"@register_algorithm({name!r}) must decorate a subclass of "
                            f"pivot_algo.algorithms.base.Algorithm, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"algorithm name {name!r} is already registered by {existing.__module__}."
                             f"{existing.__qualname__}; pick another name")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_algorithms() -> list[str]:
    """Names of every registered algorithm, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered as `name`."""
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownAlgorithmError(f"no algorithm named {name!r}; registered: {sorted(_REGISTRY)}. "
                                    "Register new ones with @pivot_algo.register_algorithm(name)")
    return _REGISTRY[name]
