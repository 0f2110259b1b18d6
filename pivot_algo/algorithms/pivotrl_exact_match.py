"""Ablation: PivotRL with a strict-match reward instead of the functional verifier.

A sample scores 1 only when its parsed action equals the demonstration's exactly: the same tool
calls in the same order with identical names and argument objects (JSON equality, so key order does
not matter but `ls -la` vs `ls -al` does), and, when the demonstration is a plain message, the same
text (stripped). Nothing is executed, so no sandbox time is spent on verdicts. Pivots come from the
same profile as PivotRL's (functional verifier), so only the training reward differs.
(Paper, tau2: 57.34 with strict match vs 63.81 functional, below SFT's 58.44.)
"""

from __future__ import annotations

from collections.abc import Sequence

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.pivotrl import PivotRL, PivotRLConfig
from pivot_envs.parsing import parse_action
from pivot_envs.trajectory import tool_calls_of
from pivot_envs.verdict import Verdict


def exact_match_judge(texts: Sequence[str], reference: dict, tools: Sequence[dict]) -> list[Verdict]:
    """Strict comparison of each sampled text with the demonstration message (see module docstring)."""
    ref_calls = [(c.name, c.arguments) for c in tool_calls_of(reference)]
    ref_text = (reference.get("content") or "").strip()
    out = []
    for text in texts:
        parsed = parse_action(text, "hermes", list(tools))
        if parsed.error is not None:
            out.append(Verdict.wrong(f"unparseable action: {parsed.error}", "exact"))
            continue
        calls = [(c.name, c.arguments) for c in parsed.tool_calls]
        if not calls and not parsed.content.strip():  # an empty reply never matches, even an empty demonstration
            out.append(Verdict.wrong("empty message", "exact"))
            continue
        if ref_calls:
            same = calls == ref_calls
        else:
            same = not calls and parsed.content.strip() == ref_text
        out.append(Verdict.correct("exact match", "exact") if same else
                   Verdict.wrong("differs from the demonstration's action", "exact"))
    return out


@register_algorithm("pivotrl_exact_match")
class PivotRLExactMatch(PivotRL):
    Config = PivotRLConfig

    def judge(self):
        return exact_match_judge
