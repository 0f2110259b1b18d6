"""Ablation: PivotRL with a strict-match reward instead of the functional verifier.

A sample scores 1 only when its parsed action equals the demonstration's exactly, by the one rule every
domain shares (pivot_envs/verifiers/rules.py `exact_match`: the same tool calls in the same order with
identical names and argument objects, JSON equality, so key order does not matter but `ls -la` vs
`ls -al` does; a plain message must have the same whitespace-normalised text; an empty reply never
matches). Nothing is executed, so no sandbox time is spent on verdicts. Pivots come from the same
profile as PivotRL's (functional verifier), so only the training reward differs.
(Paper, tau2: 57.34 with strict match vs 63.81 functional, below SFT's 58.44.)
"""

from __future__ import annotations

from collections.abc import Sequence

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.pivotrl import PivotRL, PivotRLConfig
from pivot_envs.base_env import Judgements
from pivot_envs.parsing import parse_action
from pivot_envs.verifiers.rules import exact_match


def exact_match_judge(texts: Sequence[str], reference: dict, tools: Sequence[dict]) -> Judgements:
    """Each sampled text, parsed as the envs parse it, judged by the shared strict-match rule; the parsed
    actions travel with the verdicts, so the rollout does not parse the samples a second time."""
    actions = [parse_action(text, "hermes", list(tools)) for text in texts]
    return Judgements([exact_match(action, reference) for action in actions], actions)


@register_algorithm("pivotrl_exact_match")
class PivotRLExactMatch(PivotRL):
    Config = PivotRLConfig

    def judge(self):
        return exact_match_judge
