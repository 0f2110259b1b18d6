"""BFCL v4 multi-turn entries -> pivotrl trajectories (domain "tooluse").

Source: the PyPI package `bfcl-eval` (Apache-2.0), installed `--no-deps`; its data files are read
directly (JSON Lines), nothing from its inference code is imported.

Conversion of one entry (`convert_entry`):
- `tools`: the function docs of the involved classes as OpenAI tools (BFCL's "dict" -> "object",
  "float" -> "number", "any" -> no type constraint; "default": "None" -> null).
- `messages`: a system message, then for each BFCL turn: its user message(s) (for a miss_func turn
  whose user message is empty: BFCL's "I have updated some more functions..." prompt), then one
  assistant message per ground-truth call, each followed by the tool message holding the REAL output
  of that call (executed on fresh backend instances, state carried across turns as in BFCL), then one
  closing assistant message that names the calls with their arguments and quotes the last result.
  A turn whose ground truth is empty (miss_param, miss_func, and 6 turns of base / long_context) has
  only that message, a clarifying question that names what is missing (`clarify_targets`: the
  held-out function, or the parameter whose value the user supplies next; see messages.py).
  BFCL's ground truth for a turn is one ordered list of calls, executed one after the other (a later
  call often depends on an earlier one: `cd` then `mv`), so each call is its own step.
- `task`: bfcl_id, category, involved_classes, initial_config, long_context, user_turns, ground_truth
  (per turn, `[name, kwargs]` with positional arguments named by the backend's signature), holdout
  ({turn: [function names]} for miss_func), turn_of_step (BFCL turn of each assistant message),
  message_turns ({assistant turn: "close" | "clarify"}), clarify_targets ({assistant turn:
  {"functions": [...], "parameters": [[function, parameter], ...]}}), defaults (parameter defaults from the docs and
  the backend signatures).

Converted suites are cached as JSONL under `$PIVOTRL_CACHE/tooluse/` (default ~/.cache/pivotrl), keyed
by the package version and `CONVERTER_VERSION`.
"""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import inspect
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pivot_envs.domains.tooluse import backends, messages, turns
from pivot_envs.errors import TrajectoryError
from pivot_envs.trajectory import Trajectory, iter_jsonl, save_jsonl

log = logging.getLogger(__name__)

CONVERTER_VERSION = 2  # 2: closing messages name the calls' arguments; clarifying ones name what is missing
CATEGORIES = ("base", "long_context", "miss_func", "miss_param")

FUNC_DOC_FILES = {
    "GorillaFileSystem": "gorilla_file_system.json",
    "MathAPI": "math_api.json",
    "MessageAPI": "message_api.json",
    "TwitterAPI": "posting_api.json",
    "TicketAPI": "ticket_api.json",
    "TradingBot": "trading_bot.json",
    "TravelAPI": "travel_booking.json",
    "VehicleControlAPI": "vehicle_control.json",
}

# BFCL's user message on a miss_func turn, when the held-out functions are added (protocol text).
ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"

SYSTEM_PROMPT = (
    "You are an assistant that completes the user's requests by calling the provided functions. "
    "Call functions as needed, one after another, and use their results. When a request is done, reply "
    "to the user with a short message. If a request lacks a required value, or none of the available "
    "functions can do it, do not guess: say so and ask the user for what is missing.")

_TYPE_MAP = {"dict": "object", "float": "number", "integer": "integer", "array": "array",
             "boolean": "boolean", "string": "string", "tuple": "array", "int": "integer", "bool": "boolean",
             "str": "string", "list": "array", "object": "object", "number": "number"}


# ----------------------------------------------------------------------------- reading the package

def package_version() -> str:
    try:
        return importlib.metadata.version("bfcl-eval")
    except importlib.metadata.PackageNotFoundError:
        backends.bfcl_root()  # raises the install hint
        return "unknown"


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_entries(category: str) -> list[dict]:
    """The raw BFCL entries of one multi-turn category, each with its `ground_truth` attached."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL multi-turn category {category!r}; use one of {CATEGORIES}")
    data = backends.bfcl_root() / "data"
    entries = read_jsonl(data / f"BFCL_v4_multi_turn_{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in read_jsonl(data / "possible_answer" / f"BFCL_v4_multi_turn_{category}.json")}
    for e in entries:
        if e["id"] not in answers:
            raise TrajectoryError(f"BFCL entry {e['id']!r} has no ground truth in possible_answer/", field="id")
        e["ground_truth"] = answers[e["id"]]
    return entries


def func_docs(class_name: str) -> list[dict]:
    if class_name not in FUNC_DOC_FILES:
        raise TrajectoryError(f"no BFCL function docs for class {class_name!r}; known: {sorted(FUNC_DOC_FILES)}")
    return read_jsonl(backends.bfcl_root() / "data" / "multi_turn_func_doc" / FUNC_DOC_FILES[class_name])


# ----------------------------------------------------------------------------- schemas

def _doc_default(value: Any) -> Any:
    return None if value == "None" else value


def to_json_schema(param: dict) -> dict:
    """A BFCL parameter doc as JSON schema (types mapped, nested properties/items converted)."""
    out: dict[str, Any] = {}
    typ = param.get("type")
    if isinstance(typ, str) and typ != "any":
        if typ not in _TYPE_MAP:
            raise TrajectoryError(f"unknown BFCL parameter type {typ!r}; known: {sorted(_TYPE_MAP)} and 'any'")
        out["type"] = _TYPE_MAP[typ]
    for key in ("description", "enum", "format"):
        if key in param:
            out[key] = param[key]
    if "default" in param:
        out["default"] = _doc_default(param["default"])
    if "properties" in param:
        out["properties"] = {k: to_json_schema(v) for k, v in param["properties"].items()}
    if "required" in param:
        out["required"] = list(param["required"])
    if "items" in param:
        out["items"] = to_json_schema(param["items"])
    return out


def to_openai_tool(doc: dict) -> dict:
    params = to_json_schema(doc.get("parameters", {"type": "dict", "properties": {}}))
    params.setdefault("type", "object")
    params.setdefault("properties", {})
    return {"type": "function", "function": {"name": doc["name"], "description": doc.get("description", ""),
                                             "parameters": params}}


def _signatures(involved_classes: Iterable[str]) -> dict[str, inspect.Signature]:
    sigs = {}
    for cls_name in involved_classes:
        cls = backends.load_class(cls_name)
        for name, fn in inspect.getmembers(cls, predicate=inspect.isfunction):
            if not name.startswith("_"):
                sigs[name] = inspect.signature(fn)
    return sigs


def parameter_defaults(tools: list[dict], sigs: dict[str, inspect.Signature]) -> dict[str, dict[str, Any]]:
    """{function: {optional parameter: default}}: the doc's default, else the backend signature's."""
    out: dict[str, dict[str, Any]] = {}
    for t in tools:
        fn = t["function"]
        props = fn["parameters"].get("properties", {})
        required = set(fn["parameters"].get("required", []))
        sig = sigs.get(fn["name"])
        d = {}
        for p, schema in props.items():
            if p in required:
                continue
            if "default" in schema:
                d[p] = schema["default"]
            elif sig is not None and p in sig.parameters and sig.parameters[p].default is not inspect.Parameter.empty:
                try:
                    json.dumps(sig.parameters[p].default)
                except TypeError:
                    continue
                d[p] = sig.parameters[p].default
        if d:
            out[fn["name"]] = d
    return out


# ----------------------------------------------------------------------------- call strings

def parse_call(text: str, sigs: dict[str, inspect.Signature]) -> tuple[str, dict[str, Any]]:
    """`"mv(source='a', destination='b')"` -> `("mv", {...})`, safely (ast + literal_eval, no eval);
    positional arguments get their names from the backend method's signature."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise TrajectoryError(f"ground-truth call {text!r} is not a Python call: {e.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise TrajectoryError(f"ground-truth call {text!r} must look like name(arg=value, ...)")
    name = node.func.id
    kwargs: dict[str, Any] = {}
    if node.args:
        if name not in sigs:
            raise TrajectoryError(f"ground-truth call {text!r} has positional arguments but no backend defines {name!r}")
        names = [p for p in sigs[name].parameters if p != "self"]
        for pname, arg in zip(names, node.args):
            kwargs[pname] = ast.literal_eval(arg)
    for kw in node.keywords:
        if kw.arg is None:
            raise TrajectoryError(f"ground-truth call {text!r} uses **kwargs, which is not supported")
        kwargs[kw.arg] = ast.literal_eval(kw.value)
    return name, kwargs


# ----------------------------------------------------------------------------- closing / clarifying messages

def _call_text(name: str, args: dict, limit: int = 120) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in args.items())
    text = f"{name}({inner})"
    return text if len(text) <= limit else text[: limit - 4] + "...)"


def closing_message(calls: list[tuple[str, dict]], outputs: list[str]) -> str:
    """Deterministic end-of-turn reply: the calls made (with their arguments) and the last result, so
    that the message reports what the turn produced (see messages.py, the closing rule)."""
    done = ", ".join(_call_text(n, a) for n, a in calls)
    last = outputs[-1] if outputs else ""
    if len(last) > 300:
        last = last[:300] + "..."
    return f"Done. I called {done}. The last result was: {last}"


def _readable(identifier: str) -> str:
    return " ".join(p.lower() for p in messages.name_parts(identifier)) or identifier


def _sentence(text: str) -> str:
    s = messages.first_sentence(text).rstrip(".")
    return s[:1].lower() + s[1:]


def clarify_message(category: str, targets: dict, tools: list[dict], request: str) -> str:
    """Deterministic clarifying reply that names what is missing (the clarifying rule in messages.py)."""
    docs = {t["function"]["name"]: t["function"] for t in tools}
    if targets.get("functions"):
        wanted = "; ".join(_sentence(docs.get(f, {}).get("description", "")) or _readable(f)
                           for f in targets["functions"])
        return (f"I can't do that with the functions I have available: none of them can {wanted}. Could you "
                "provide a function for it, or tell me how you would like to proceed?")
    if targets.get("parameters"):
        parts = []
        for f, p in targets["parameters"]:
            desc = _sentence(docs.get(f, {}).get("parameters", {}).get("properties", {}).get(p, {})
                             .get("description", ""))
            parts.append(f"the {_readable(p)} for {f}" + (f" ({desc})" if desc else ""))
        return (f"I can't complete this yet because the request does not give {' and '.join(parts)}. "
                "Could you please provide it?")
    excerpt = " ".join(request.split()[:15])
    if category.endswith("miss_param"):
        return (f"I can't complete this yet because some required information is missing for \"{excerpt}\". "
                "Could you please provide the missing details?")
    return (f"I can't do that with the functions I have available (\"{excerpt}\"). Could you provide a "
            "function for it, or tell me how you would like to proceed?")


def _value_strings(value: Any) -> list[str]:
    """The informative scalar values inside an argument value, as lowercase strings."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float, str)):
        s = str(value).strip().lower()
        return [s] if s else []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _value_strings(v)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _value_strings(v)]
    return []


def clarify_targets(category: str, t: int, user_turns: list[list[dict]], calls_per_turn: list[list],
                    outputs_per_turn: list[list[str]], holdout: dict[str, list[str]]) -> dict:
    """What BFCL turn t (empty ground truth) lacks: {"functions": [...], "parameters": [[fn, param]]}.

    miss_func: the functions the next turn adds (held out until then). miss_param: the arguments of the next
    turn's calls whose value the user supplies in the next turn (it occurs in the next user message,
    not in this turn's); when none does, those whose value occurs in no earlier user message and no
    tool output seen before the call (so it must come from the user). Other turns: {} (the request
    itself cannot be done)."""
    if category.endswith("miss_func"):
        added_next = holdout.get(str(t + 1))
        return {"functions": list(added_next)} if added_next else {}
    if not category.endswith("miss_param") or t + 1 >= len(calls_per_turn):
        return {}
    this = " ".join(m.get("content") or "" for m in user_turns[t]).lower()
    nxt = " ".join(m.get("content") or "" for m in user_turns[t + 1]).lower()
    earlier_users = " ".join(m.get("content") or "" for turn in user_turns[: t + 1] for m in turn).lower()
    seen = " ".join(o for turn in outputs_per_turn[: t + 1] for o in turn).lower()
    supplied, unseen = [], []
    for j, (name, args) in enumerate(calls_per_turn[t + 1]):
        seen_now = seen + " " + " ".join(outputs_per_turn[t + 1][:j]).lower()
        for p, v in args.items():
            vals = _value_strings(v)
            if not vals:
                continue
            if any(x in nxt and x not in this for x in vals):
                supplied.append([name, p])
            elif not any(x in earlier_users or x in seen_now for x in vals):
                unseen.append([name, p])
    chosen = supplied or unseen
    return {"parameters": [list(x) for x in dict.fromkeys(tuple(c) for c in chosen)]} if chosen else {}


# ----------------------------------------------------------------------------- conversion

def convert_entry(entry: dict, version: str | None = None) -> Trajectory:
    """One BFCL multi-turn entry (with `ground_truth` attached) -> Trajectory (see module docstring)."""
    bfcl_id = entry["id"]
    category = bfcl_id.rsplit("_", 1)[0]
    involved = list(entry["involved_classes"])
    long_context = "long_context" in category or "composite" in category
    tools = [to_openai_tool(doc) for cls in involved for doc in func_docs(cls)]
    sigs = _signatures(involved)
    holdout = {str(k): list(v) for k, v in (entry.get("missed_function") or {}).items()}
    gt_calls = [[parse_call(c, sigs) for c in turn] for turn in entry["ground_truth"]]
    ground_truth = [[list(c) for c in turn] for turn in gt_calls]  # JSON-friendly form, stored in the task
    if len(ground_truth) != len(entry["question"]):
        raise TrajectoryError(f"BFCL entry {bfcl_id!r}: {len(entry['question'])} user turns but "
                              f"{len(ground_truth)} ground-truth turns")

    user_turns: list[list[dict]] = []
    for t, question in enumerate(entry["question"]):
        user_msgs = [dict(m) for m in question]
        if not user_msgs:
            if str(t) not in holdout:
                raise TrajectoryError(f"BFCL entry {bfcl_id!r} turn {t} has no user message and adds no function")
            user_msgs = [{"role": "user", "content": ADDED_FUNCTIONS_PROMPT}]
        user_turns.append(user_msgs)
    # run every turn's calls first (state carried across turns): a clarifying message names what the
    # NEXT turn supplies, so it needs the next turn's calls and outputs
    instances = backends.instantiate(involved, entry["initial_config"], long_context)
    methods = backends.public_methods(instances)
    # each call gets its own copy of the arguments: a backend may keep and later mutate an argument
    # object (TwitterAPI keeps the `mentions` list a later `mention` call extends), which must not
    # change the recorded ground truth
    outputs_per_turn = [[backends.execute_call(methods, name, copy.deepcopy(kwargs)) for name, kwargs in calls]
                        for calls in gt_calls]

    messages_out: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    turn_of_step: list[int] = []
    message_turns: dict[str, str] = {}
    targets_of: dict[str, dict] = {}
    for t, (user_msgs, calls, outputs) in enumerate(zip(user_turns, gt_calls, outputs_per_turn)):
        messages_out.extend(user_msgs)
        for j, ((name, kwargs), out) in enumerate(zip(calls, outputs)):
            call_id = f"call_{t}_{j}"
            turn_of_step.append(t)
            messages_out.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": json.dumps(kwargs, ensure_ascii=False)}}]})
            messages_out.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": out})
        k = str(len(turn_of_step))
        message_turns[k] = "close" if calls else "clarify"
        turn_of_step.append(t)
        if calls:
            content = closing_message(calls, outputs)
        else:
            targets = clarify_targets(category, t, user_turns, gt_calls, outputs_per_turn, holdout)
            targets_of[k] = targets
            request = "\n".join(m.get("content") or "" for m in user_msgs)
            content = clarify_message(category, targets, tools, request)
        messages_out.append({"role": "assistant", "content": content})
    task = {"source": f"bfcl-eval=={version or package_version()}", "bfcl_id": bfcl_id, "category": category,
            "involved_classes": involved, "initial_config": entry["initial_config"], "long_context": long_context,
            "user_turns": user_turns, "ground_truth": ground_truth, "holdout": holdout,
            "excluded_function": entry.get("excluded_function", []), "turn_of_step": turn_of_step,
            "message_turns": message_turns, "clarify_targets": targets_of,
            "defaults": parameter_defaults(tools, sigs)}
    return Trajectory(id=bfcl_id, domain="tooluse", task=task, tools=tools, messages=messages_out)


def cache_dir() -> Path:
    return Path(os.environ.get("PIVOTRL_CACHE", Path.home() / ".cache" / "pivotrl")) / "tooluse"


def cache_path(category: str) -> Path:
    return cache_dir() / f"bfcl-{package_version()}-conv{CONVERTER_VERSION}" / f"multi_turn_{category}.jsonl"


def convert_category(category: str) -> list[Trajectory]:
    """Convert every entry of one category (no cache)."""
    version = package_version()
    return [convert_entry(e, version) for e in load_entries(category)]


def load_suite(categories: Iterable[str] = CATEGORIES, limit: int | None = None, use_cache: bool = True
               ) -> list[Trajectory]:
    """The converted BFCL multi-turn suite (cached JSONL; converted on first use). `limit` = per category."""
    out: list[Trajectory] = []
    for cat in categories:
        path = cache_path(cat)
        if use_cache and path.exists():
            trajs = list(iter_jsonl(path))
        else:
            log.info("converting BFCL multi-turn %s (once; cached at %s)", cat, path)
            trajs = convert_category(cat)
            if use_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                os.close(fd)
                save_jsonl(trajs, tmp)
                os.replace(tmp, path)  # atomic: concurrent converters never see a half file
        out.extend(trajs[:limit] if limit is not None else trajs)
    return out


# ----------------------------------------------------------------------------- per-turn views

def bfcl_turn_of(traj: Trajectory, k: int) -> int:
    """BFCL turn index of assistant turn k (k == num_turns: one past the last turn)."""
    steps = turns.turn_of_step(traj)
    return steps[k] if k < len(steps) else len(turns.user_turns(traj))


def available_functions(traj: Trajectory, bfcl_turn: int) -> list[str]:
    """Function names the agent may call during BFCL turn `bfcl_turn` (miss_func holds some back).
    A few BFCL entries (e.g. multi_turn_miss_func_49) have ground truth that calls a held-out function
    before the turn that adds it; such a function counts as available from the turn the ground truth
    first uses it, so the demonstration stays a valid action."""
    used = {c[0] for turn in traj.task.get("ground_truth", [])[: bfcl_turn + 1] for c in turn}
    held = {name for t, names in traj.task.get("holdout", {}).items() if int(t) > bfcl_turn for name in names
            if name not in used}
    return [t["function"]["name"] for t in traj.tools if t["function"]["name"] not in held]


def tools_at(traj: Trajectory, bfcl_turn: int) -> list[dict]:
    allowed = set(available_functions(traj, bfcl_turn))
    return [t for t in traj.tools if t["function"]["name"] in allowed]


def steps_before(traj: Trajectory, k: int) -> list[list[backends.Call]]:
    """The demonstration's tool calls of assistant turns 0..k-1, one list per turn (empty for messages)."""
    from pivot_envs.trajectory import tool_calls_of

    return [[(c.name, c.arguments) for c in tool_calls_of(a)] for a in traj.actions_before(k)]
