"""Judging rules shared by every domain (rules.py): the one exact-match rule of the strict-match ablation,
and the PivotRL paper's rules (text similarity, recursive argument matching). Each domain's verifier
classes call these; the functional verifiers that execute (terminal effects, tool-use backends, the
miniature world's values) stay in their domain, since what "same effect" means is the domain's."""

from pivot_envs.verifiers.rules import (
    PAPER_SIMILARITY,
    ExactVerifier,
    exact_match,
    normalise_text,
    paper_calls_match,
    paper_value_match,
    similarity,
)

__all__ = ["PAPER_SIMILARITY", "ExactVerifier", "exact_match", "normalise_text", "paper_calls_match", "paper_value_match", "similarity"]
