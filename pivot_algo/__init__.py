"""pivot_algo: PivotRL and the algorithms it is compared with, over `pivot_envs` start states.

The package root stays light (no torch import): it exposes the algorithm registry. The trainer,
profiler and policies live in submodules:

    import pivot_algo
    pivot_algo.list_algorithms()          # ['e2e_grpo', 'pivotrl', ...]

    @pivot_algo.register_algorithm("my_algo")
    class MyAlgo(pivot_algo.algorithms.base.Algorithm): ...
"""

from pivot_algo.algorithms import get_algorithm, list_algorithms, register_algorithm

__all__ = ["register_algorithm", "list_algorithms", "get_algorithm"]
