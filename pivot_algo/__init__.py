"""pivot_algo: PivotRL and the algorithms it is compared with, over `pivot_envs` start states.

Everything an outside algorithm needs is importable from here:

    import pivot_algo

    @pivot_algo.register_algorithm("my_algo")
    class MyAlgo(pivot_algo.Algorithm):
        Config = MyConfig
        def collect(self, ctx: pivot_algo.CollectContext) -> pivot_algo.Batch: ...
        def loss(self, policy, batch): ...

    pivot_algo.list_algorithms()          # ['e2e_grpo', 'my_algo', 'pivotrl', ...]

A plug-in living outside the package is named in a config (`plugins: [path/to/my_algo.py]`) and
trains through the CLI: `pivotrl train --config tiny plugins=[my_algo.py] algo=my_algo`.

The package root stays light: the registry is imported eagerly, the torch-backed types (`Algorithm`,
`Batch`, `TrainGroup`, `CollectContext`, `StartState`, `SampledGroup`) only when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from pivot_algo.algorithms import get_algorithm, list_algorithms, register_algorithm
from pivot_algo.plugins import PluginError, load_plugins
from pivot_envs.verdict import Verdict

# name -> module that defines it, imported on first attribute access (PEP 562)
_LAZY = {
    "Algorithm": "pivot_algo.algorithms.base",
    "Batch": "pivot_algo.algorithms.base",
    "TrainGroup": "pivot_algo.algorithms.base",
    "CollectContext": "pivot_algo.algorithms.base",
    "ConfigError": "pivot_algo.algorithms.base",
    "StartState": "pivot_algo.rollout",
    "SampledGroup": "pivot_algo.rollout",
    "Rollouts": "pivot_algo.rollout",
}

__all__ = [
    "Algorithm",
    "Batch",
    "CollectContext",
    "ConfigError",
    "PluginError",
    "Rollouts",
    "SampledGroup",
    "StartState",
    "TrainGroup",
    "Verdict",
    "get_algorithm",
    "list_algorithms",
    "load_plugins",
    "register_algorithm",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pivot_algo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
