"""Ablation: PivotRL's update on uniformly random assistant turns instead of profiled pivots.

Everything else (G samples, verifier reward, online zero-variance filter, loss) is PivotRL's; only
the choice of start states changes, so the comparison isolates the value of pivot profiling.
(Paper, tau2: 59.68 with random turns vs 63.81 with pivots.)
"""

from __future__ import annotations

from typing import Any

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.base import CollectContext, ConfigError
from pivot_algo.algorithms.pivotrl import PivotRL, PivotRLConfig


@register_algorithm("pivotrl_random_turns")
class PivotRLRandomTurns(PivotRL):
    Config = PivotRLConfig
    needs_pivots = False  # no profiling: that is the point of the ablation

    def choose_states(self, ctx: CollectContext) -> list[Any]:
        if not ctx.train_states:
            raise ConfigError("pivotrl_random_turns has no candidate states: the training split is empty")
        k = min(self.config.pivots_per_step, len(ctx.train_states))
        idx = ctx.rng.choice(len(ctx.train_states), size=k, replace=False)
        return [ctx.train_states[i] for i in sorted(idx)]
