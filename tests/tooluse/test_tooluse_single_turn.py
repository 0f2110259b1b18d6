"""BFCL single-turn evaluation: an oracle built from the possible answers scores (almost) 1, a model
that never calls scores 0 on relevance categories and 1 on irrelevance, and wrong values score 0."""

from __future__ import annotations

import json

import pytest

from pivot_envs.domains.tooluse import single_turn as st
from pivot_envs.parsing import parse_action


def _first(opts):
    opts = opts if isinstance(opts, list) else [opts]
    o = next(x for x in opts if x != "")
    if isinstance(o, dict):
        return {k: _first(v) for k, v in o.items() if any(x != "" for x in (v if isinstance(v, list) else [v]))}
    return o


def oracle_text(item):
    if item["category"] in st.NO_CALL_CATEGORIES:
        return "None of the functions fits this request."
    if item["category"] in st.ANY_CALL_CATEGORIES:
        first = item["tools"][0]["function"]["name"]
        return f"<tool_call>{json.dumps({'name': first, 'arguments': {}})}</tool_call>"
    out = []
    for call in item["answers"]:
        (name, allowed), = call.items()
        args = {k: _first(v) for k, v in allowed.items() if any(x != "" for x in v)}
        out.append(f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>")
    return "\n".join(reversed(out))  # parallel calls in another order


@pytest.mark.parametrize("category", st.CATEGORIES)
def test_oracle_scores_high_and_silence_scores_by_category(bfcl_suite, category):
    items = st.load_items(category, limit=60)
    assert items and all(i["tools"] and i["messages"][-1]["role"] in ("user", "assistant") for i in items)
    oracle = sum(st.score_item(i, parse_action(oracle_text(i), "hermes", i["tools"]))[0] for i in items) / len(items)
    silent = sum(st.score_item(i, parse_action("I can't help with that.", "hermes", i["tools"]))[0] for i in items) / len(items)
    assert oracle >= 0.95, category
    assert silent == (1.0 if category in st.NO_CALL_CATEGORIES else 0.0)


def test_evaluate_single_turn_api_and_wrong_values():
    items = {json.dumps([i["messages"], i["tools"]]): i for i in st.load_items("simple_python", limit=30)}

    def perturbed(messages, tools):
        item = items[json.dumps([messages, tools])]
        text = oracle_text(item)
        return text.replace('"arguments": {"', '"arguments": {"zz_unexpected": 1, "', 1)

    acc = st.evaluate_single_turn(lambda m, t: oracle_text(items[json.dumps([m, t])]), ["simple_python"], limit=30)
    assert acc == {"simple_python": 1.0}
    assert st.evaluate_single_turn(perturbed, ["simple_python"], limit=30) == {"simple_python": 0.0}


@pytest.mark.parametrize("value, allowed, schema, ok", [
    (5, [5.0], {"type": "number"}, True),
    ("5", [5], {"type": "integer"}, True),
    ("April 1, 2024", ["april 1 2024"], {"type": "string"}, True),   # BFCL string standardisation
    (True, [1], {"type": "integer"}, False),
    (None, ["", "x"], {"type": "string"}, False),
    ({"a": 1}, [{"a": [1, 2], "b": ["", 3]}], {"type": "object"}, True),
    ({"a": 3}, [{"a": [1, 2]}], {"type": "object"}, False),
])
def test_value_allowed_table(value, allowed, schema, ok):
    assert st.value_allowed(value, allowed, schema) is ok
