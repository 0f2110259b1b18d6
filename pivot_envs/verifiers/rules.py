"""The judging rules every domain shares, as plain functions with table tests (tests/test_verifier_rules.py).

Exact match (the "strict match" ablation: the paper's tau2 row 57.34 against 63.81 functional) is ONE rule
in every domain, so the ablation measures the same thing wherever it runs:
  * an action that does not parse never matches;
  * if either side has tool calls: the same calls in the same order, names equal and argument objects
    equal as JSON (key order does not matter; `ls -la` vs `ls -al` does, 5 vs 5.0 does);
  * else both are messages: the texts equal after whitespace normalisation (runs of spaces, tabs and
    newlines are one space; leading and trailing whitespace dropped); an empty reply never matches, even
    an empty demonstration (a constant empty answer must earn nothing).

The paper's rules: text similarity is difflib's ratio >= 0.95 (terminal commands, the miniature world's
messages); tool-call arguments are matched recursively (same dict keys, same list lengths, floats within
1e-6, other scalars exact, strings of 2+ words by bag-of-words overlap |common| / (|expected| + |actual|)
>= 0.1, shorter strings exact), several calls as a batch (some one-to-one pairing).
"""

from __future__ import annotations

import difflib
import itertools
import json
from collections import Counter
from typing import Any

from pivot_envs.parsing import ParsedAction
from pivot_envs.trajectory import tool_calls_of
from pivot_envs.verdict import NoSettings, Verdict

PAPER_SIMILARITY = 0.95
"""The paper's text-similarity threshold (difflib ratio)."""
PAPER_STRING_THRESHOLD = 0.1
"""The paper's bag-of-words overlap for argument strings of two or more words."""
FLOAT_TOL = 1e-6


def normalise_text(text: str | None) -> str:
    """Whitespace-normalised text: runs of whitespace are one space, no leading or trailing space."""
    return " ".join((text or "").split())


def _call_key(name: str, arguments: Any) -> str:
    return json.dumps([name, arguments], sort_keys=True, ensure_ascii=False)


def exact_match(action: ParsedAction, reference: dict, method: str = "exact") -> Verdict:
    """The strict-match rule (module docstring): `action` (parsed) against the demonstration's message."""
    if action.error:
        return Verdict.wrong(f"unparseable action: {action.error}", method)
    ref_calls = [_call_key(c.name, c.arguments) for c in tool_calls_of(reference)]
    got_calls = [_call_key(c.name, c.arguments) for c in action.tool_calls]
    if ref_calls or got_calls:
        if got_calls == ref_calls:
            return Verdict.correct("identical calls", method)
        return Verdict.wrong("calls are not identical to the demonstration's (strict match)", method)
    got = normalise_text(action.content)
    if not got:
        return Verdict.wrong("empty message", method)
    if got == normalise_text(reference.get("content")):
        return Verdict.correct("same text", method)
    return Verdict.wrong("text differs from the demonstration's (strict match)", method)


def similarity(a: str, b: str) -> float:
    """difflib's ratio of two strings (the paper's similarity; compare with PAPER_SIMILARITY)."""
    return difflib.SequenceMatcher(None, a, b).ratio()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def paper_value_match(expected: Any, actual: Any, threshold: float = PAPER_STRING_THRESHOLD) -> bool:
    """The paper's recursive argument comparison (module docstring)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and set(expected) == set(actual) and all(
            paper_value_match(expected[k], actual[k], threshold) for k in expected)
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            paper_value_match(e, a, threshold) for e, a in zip(expected, actual))
    if isinstance(expected, float) or isinstance(actual, float):
        return _is_number(expected) and _is_number(actual) and abs(expected - actual) <= FLOAT_TOL
    if isinstance(expected, str) and isinstance(actual, str):
        ew, aw = expected.lower().split(), actual.lower().split()
        if len(ew) < 2 or len(aw) < 2:
            return expected == actual
        common = sum((Counter(ew) & Counter(aw)).values())
        return common / (len(ew) + len(aw)) >= threshold
    return type(expected) is type(actual) and expected == actual


def paper_calls_match(sampled: list[tuple[str, dict]], reference: list[tuple[str, dict]]) -> bool:
    """The paper's call rule: same number of calls, and a one-to-one pairing where each pair has the same
    name and matching arguments (`paper_value_match`)."""
    if len(sampled) != len(reference):
        return False

    def ok(s: tuple[str, dict], r: tuple[str, dict]) -> bool:
        return s[0] == r[0] and paper_value_match(r[1], s[1])

    if len(reference) <= 6:
        return any(all(ok(s, r) for s, r in zip(perm, reference)) for perm in itertools.permutations(sampled))
    used: set[int] = set()  # greedy beyond 6 calls (720 permutations)
    for r in reference:
        j = next((i for i, s in enumerate(sampled) if i not in used and ok(s, r)), None)
        if j is None:
            return False
        used.add(j)
    return True


class ExactVerifier(NoSettings):
    """`exact_match` as a domain verifier (`judge(state, action, reference)`; the state is not read): what
    a domain declares as its "exact" verifier unless its state key needs more (tool use's)."""

    name = "exact"

    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        return exact_match(action, reference, self.name)
