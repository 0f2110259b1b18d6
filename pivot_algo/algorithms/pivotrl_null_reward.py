"""Control: PivotRL with each group's rewards shuffled among its samples (a null reward).

Same pivots, same samples, same number of rewarded samples per group, so the same groups survive the
zero-variance filter and the advantages have the same sizes; only which completion gets the credit is
random. Whatever this run changes (in domain or out of domain) is what updating on these states does
by itself; what PivotRL changes beyond it is what the verifier teaches. (A Bernoulli redraw at the
profiled mean would also change how many groups are kept; a permutation keeps that fixed.)
"""

from __future__ import annotations

import numpy as np

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.base import CollectContext
from pivot_algo.algorithms.pivotrl import PivotRL, PivotRLConfig


@register_algorithm("pivotrl_null_reward")
class PivotRLNullReward(PivotRL):
    Config = PivotRLConfig

    def group_rewards(self, rewards: np.ndarray, ctx: CollectContext) -> np.ndarray:
        return ctx.rng.permutation(rewards)
