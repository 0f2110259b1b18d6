"""AST mutations: each kind makes the change it names, touches only its span, and its reverse is the
fix; the sampler is seeded and spreads over kinds."""

from __future__ import annotations

import ast
import random

import pytest

from pivot_envs.domains.swe.expert import fix_edit
from pivot_envs.domains.swe.mutations import (
    KINDS,
    find_mutations,
    is_valid,
    sample_balanced,
)

SOURCE = '''"""A module."""


def clamp(x, lo, hi):
    """Clamp x."""
    if x < lo:
        return lo
    total = x + 0
    if x > hi and hi is not None:
        return max(hi, lo)
    else:
        total += 1
    return total == x + 1 or True


def window(seq, n):
    out = []
    for i in range(len(seq) - 1):
        out.append(seq[i:i + n])
    label = "windowed"
    return out
'''

EXPECTED = {  # kind -> a text that one mutation of that kind must produce
    "flip_comparison": "if x >= lo:",
    "off_by_one": "range(len(seq) - 2)",
    "wrong_constant": "label = 'indowed'",
    "swap_arguments": "max(lo, hi)",
    "changed_return": "return None",
    "flip_boolean": "if x > hi or hi is not None:",
    "wrong_operator": "total = x - 0",
    "remove_statement": None,  # checked below
    "remove_branch": None,
}


def test_every_kind_is_found_and_does_what_it_names():
    muts = find_mutations("m.py", SOURCE)
    kinds = {m.kind for m in muts}
    assert kinds == set(KINDS)
    for kind, text in EXPECTED.items():
        if text:
            assert any(text in m.apply(SOURCE) for m in muts if m.kind == kind), kind
    removed = [m for m in muts if m.kind == "remove_statement"]
    assert any('label = "windowed"' not in m.apply(SOURCE) for m in removed)
    branches = [m for m in muts if m.kind == "remove_branch"]
    assert any("if x < lo" not in m.apply(SOURCE) for m in branches)
    assert any("else:" not in m.apply(SOURCE) for m in branches)


def test_a_mutation_changes_only_its_lines_and_keeps_the_rest_byte_for_byte():
    for m in find_mutations("m.py", SOURCE):
        if not is_valid(m, SOURCE):
            continue
        new = m.apply(SOURCE).splitlines(keepends=True)
        old = SOURCE.splitlines(keepends=True)
        assert old[:m.start_line - 1] == new[:m.start_line - 1]
        tail = len(old) - m.end_line
        assert tail == 0 or old[-tail:] == new[-tail:]
        assert ast.dump(ast.parse(m.apply(SOURCE))) != ast.dump(ast.parse(SOURCE))


def test_the_expert_edit_reverses_each_mutation_uniquely():
    for m in find_mutations("m.py", SOURCE):
        if not is_valid(m, SOURCE):
            continue
        buggy = m.apply(SOURCE)
        old, new = fix_edit(buggy, SOURCE)
        assert buggy.count(old) == 1, (m.kind, old)
        assert buggy.replace(old, new) == SOURCE


def test_the_expert_edit_is_unique_when_only_lines_were_removed_amid_repeated_context():
    # found on inflection: the unique context `    ))\n\n` stops being unique once its last newline
    # is dropped from old_str, so the uniqueness check must look at old_str as it is sent
    for clean, removed in [("    ))\n    ))\n    ))\n\n", "    ))\n"),
                           ("def f():\n    a(\n    ))\n    b(\n    ))\n\n\nx = 1\n", "    b(\n    ))\n")]:
        buggy = clean.replace(removed, "", 1)
        old, new = fix_edit(buggy, clean)
        assert buggy.count(old) == 1 and buggy.replace(old, new) == clean, (clean, old)


def test_a_stale_mutation_refuses_to_apply():
    m = find_mutations("m.py", SOURCE)[0]
    with pytest.raises(ValueError, match="changed"):
        m.apply(SOURCE.replace("clamp", "clip", 1).replace('"""A module."""', "#\n#"))


def test_sampling_is_seeded_and_balanced_over_kinds():
    muts = find_mutations("m.py", SOURCE)
    a = sample_balanced(muts, 9, random.Random(1), valid=lambda m: is_valid(m, SOURCE))
    b = sample_balanced(muts, 9, random.Random(1), valid=lambda m: is_valid(m, SOURCE))
    assert [(m.start_line, m.new_text) for m in a] == [(m.start_line, m.new_text) for m in b]
    # at most two per function (two functions here), drawn round-robin: four different kinds
    assert len(a) == 4 and len({m.kind for m in a}) == 4
