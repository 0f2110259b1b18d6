"""BFCL v4 single-turn function calling as an evaluation set (the function-calling part of the
out-of-domain harness).

    from pivot_envs.domains.tooluse.single_turn import evaluate_single_turn
    acc = evaluate_single_turn(lambda messages, tools: model_text, categories=["simple_python"], limit=50)
    # {"simple_python": 0.62}

Each item: prompt messages (our system prompt + BFCL's question), OpenAI tools (BFCL docs converted as
in `bfcl.py`; dotted names such as `math.factorial` become `math_factorial`, as BFCL does for
function-calling models) and the acceptable answers from `possible_answer/` (per call, per argument a
list of allowed values; `""` in the list = the argument may be omitted).

Scoring (`score_item`), with the same canonicalisation as the multi-turn verifier (`verifier.py`):
- relevance categories: the generated calls must match the answer calls as a multiset (count equal,
  one-to-one pairing); a call matches when the name is equal, every argument is known to the answer,
  and each canonicalised value equals one of the allowed values (strings compared after BFCL's
  standardisation: lower-cased, spaces and `,./-_*^` removed; nested dicts recursively); an omitted
  argument is fine only when `""` is allowed;
- `irrelevance`, `live_irrelevance`: correct when the model makes no call;
- `live_relevance`: correct when the model makes at least one valid call.
Java / JavaScript categories are left out (their answers are typed source strings).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from pivot_envs.domains.tooluse import backends, bfcl
from pivot_envs.domains.tooluse.verifier import canonical_value
from pivot_envs.parsing import ParsedAction, parse_action

log = logging.getLogger(__name__)

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance", "live_simple",
              "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance")
NO_CALL_CATEGORIES = ("irrelevance", "live_irrelevance")
ANY_CALL_CATEGORIES = ("live_relevance",)

SYSTEM_PROMPT = ("You are an assistant with access to functions. If the request can be done with the "
                 "functions, call them (several calls at once when needed); if none fits, or required "
                 "values are missing, reply in plain text and do not call anything.")

_STD_RE = re.compile(r"[ ,./\-_*^]")


def tool_name(name: str) -> str:
    """BFCL names may contain dots; OpenAI tool names may not."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)


def _schema(param: dict) -> dict:
    """Like `bfcl.to_json_schema`, but unknown types (rare in single-turn docs) become untyped."""
    try:
        return bfcl.to_json_schema(param)
    except Exception:  # noqa: BLE001 - an odd type must not drop the item
        return {k: v for k, v in param.items() if k != "type"}


def load_items(category: str, limit: int | None = None) -> list[dict]:
    """[{"id", "category", "messages", "tools", "answers"}] for one single-turn category."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL single-turn category {category!r}; use one of {CATEGORIES}")
    data = backends.bfcl_root() / "data"
    entries = bfcl.read_jsonl(data / f"BFCL_v4_{category}.json")
    answers: dict[str, list] = {}
    ans_path = data / "possible_answer" / f"BFCL_v4_{category}.json"
    if ans_path.exists():
        answers = {a["id"]: a["ground_truth"] for a in bfcl.read_jsonl(ans_path)}
    items = []
    for e in entries[:limit] if limit is not None else entries:
        tools = []
        for doc in e["function"]:
            params = _schema(doc.get("parameters", {"type": "dict", "properties": {}}))
            params["type"] = "object"
            params.setdefault("properties", {})
            tools.append({"type": "function", "function": {"name": tool_name(doc["name"]),
                                                           "description": doc.get("description", ""),
                                                           "parameters": params}})
        gt = [{tool_name(name): allowed for name, allowed in call.items()} for call in answers.get(e["id"], [])]
        if category not in NO_CALL_CATEGORIES + ANY_CALL_CATEGORIES and not gt:
            raise ValueError(f"BFCL single-turn entry {e['id']!r} has no possible answer")
        messages = [{"role": "system", "content": SYSTEM_PROMPT}] + [dict(m) for m in e["question"][0]]
        items.append({"id": e["id"], "category": category, "messages": messages, "tools": tools, "answers": gt})
    return items


def _std(v: Any) -> Any:
    return _STD_RE.sub("", v).lower().replace("'", '"') if isinstance(v, str) else v


def value_allowed(value: Any, allowed: Any, schema: dict) -> bool:
    """Is `value` (canonicalised against `schema`) one of the allowed values?"""
    options = allowed if isinstance(allowed, list) else [allowed]
    v = canonical_value(value, schema)
    for opt in options:
        if opt == "":
            continue
        if isinstance(opt, dict) and isinstance(v, dict):
            props = schema.get("properties", {})
            if set(v) <= set(opt) and all(
                    (k in v and value_allowed(v[k], a, props.get(k, {}))) or (k not in v and "" in (a if isinstance(a, list) else [a]))
                    for k, a in opt.items()):
                return True
            continue
        o = canonical_value(opt, schema)
        if isinstance(o, list) and isinstance(v, list):
            if len(o) == len(v) and all(_std(a) == _std(b) if isinstance(a, str) else a == b for a, b in zip(o, v)):
                return True
        elif isinstance(o, str) and isinstance(v, str):
            if _std(o) == _std(v):
                return True
        elif (isinstance(o, bool) or isinstance(v, bool)) and type(o) is not type(v):
            continue
        elif o == v:
            return True
    return False


def call_matches(name: str, args: dict, answer: dict, tools_by_name: dict[str, dict]) -> bool:
    if name not in answer:
        return False
    allowed = answer[name]
    props = tools_by_name.get(name, {}).get("function", {}).get("parameters", {}).get("properties", {})
    if set(args) - set(allowed):
        return False
    for param, opts in allowed.items():
        if param in args:
            if not value_allowed(args[param], opts, props.get(param, {})):
                return False
        elif "" not in opts:
            return False
    return True


def score_item(item: dict, action: ParsedAction) -> tuple[bool, str]:
    """(correct, reason) for one generated action."""
    cat = item["category"]
    calls = [] if action.error else [(c.name, c.arguments) for c in action.tool_calls]
    if cat in NO_CALL_CATEGORIES:
        return (not calls), ("no call, as required" if not calls else f"called {[n for n, _ in calls]} but no function fits")
    if cat in ANY_CALL_CATEGORIES:
        return bool(calls), ("made a call" if calls else f"no valid call ({action.error or 'plain message'})")
    if action.error:
        return False, action.error
    answers = item["answers"]
    if len(calls) != len(answers):
        return False, f"expected {len(answers)} call(s), got {len(calls)}"
    tools_by_name = {t["function"]["name"]: t for t in item["tools"]}
    ok = lambda c, a: call_matches(c[0], c[1], a, tools_by_name)
    if len(answers) <= 6:
        found = any(all(ok(c, a) for c, a in zip(perm, answers)) for perm in itertools.permutations(calls))
    else:
        used: set[int] = set()
        found = True
        for a in answers:
            j = next((i for i, c in enumerate(calls) if i not in used and ok(c, a)), None)
            if j is None:
                found = False
                break
            used.add(j)
    return found, ("calls match the possible answers" if found else "no one-to-one match with the possible answers")


def evaluate_single_turn_detailed(generate_fn: Callable[[list[dict], list[dict]], str],
                                  categories: Iterable[str] = CATEGORIES, limit: int | None = None,
                                  parser: str = "hermes") -> dict[str, Any]:
    """Per-category accuracy plus per-item results ({"accuracy": {...}, "items": [...]})."""
    accuracy: dict[str, float] = {}
    rows = []
    for cat in categories:
        items = load_items(cat, limit)
        correct = 0
        for item in items:
            text = generate_fn([dict(m) for m in item["messages"]], item["tools"])
            action = parse_action(text, parser, item["tools"])
            ok, why = score_item(item, action)
            correct += ok
            rows.append({"id": item["id"], "category": cat, "correct": ok, "reason": why})
        accuracy[cat] = correct / len(items) if items else 0.0
        log.info("BFCL %s: %d/%d", cat, correct, len(items))
    return {"accuracy": accuracy, "items": rows}


def evaluate_single_turn(generate_fn: Callable[[list[dict], list[dict]], str],
                         categories: Iterable[str] = CATEGORIES, limit: int | None = None,
                         parser: str = "hermes") -> dict[str, float]:
    """Accuracy per category. `generate_fn(messages, tools) -> assistant text` (Hermes tool-call format
    unless `parser=` names another registered parser); `limit` = items per category."""
    return evaluate_single_turn_detailed(generate_fn, categories, limit, parser)["accuracy"]
