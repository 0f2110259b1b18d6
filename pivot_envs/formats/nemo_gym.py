"""NeMo-Gym pivot rows <-> pivotrl trajectories.

A NeMo-Gym pivot row (the contract of NeMo-Gym's single-step tool-use resources servers) is one
decision point of an agent trajectory:

    {"responses_create_params": {"input": [Responses-API items], "tools": [flat function specs], ...},
     "expected_action": {"type": "function_call", "name": ..., "arguments": "<JSON string>"}
                      | {"type": "function_call_batch", "calls": [function_call, ...], "ordered"?: bool}
                      | {"type": "message", "content": ...},
     "agent_ref": {"type": "responses_api_agents", "name": ...},
     ...any other fields (ids, pass-rate statistics, metadata)}

**Import.** The `input` items become the conversation and the expected action its last assistant
message, so the row's decision point is the trajectory's last turn (earlier assistant items are
turns too: the demonstration's own, replayed as context). Items: `{"role", "content"}` messages
(`developer` read as system; content as a string or text parts), `function_call` (calls right after
an assistant message, or after each other, join that assistant turn), `function_call_output` (a
tool message), `reasoning` (not part of the conversation). Flat tools become nested OpenAI tools.

**Lossless.** Everything the trajectory does not represent is kept in `task["nemo_gym"]`: the row's
other fields (`agent_ref`, pass rates, ...) and key order, the other `responses_create_params`, and, only where the
canonical rebuild would differ (content parts, item ids, `reasoning` items, `strict` flags,
`ordered`), the original `input`, `tools` or `expected_action`. The exporter writes a kept original
back when the trajectory still derives from it (unchanged since import), else rebuilds it from the
trajectory; so `export(import(row)) == row`, key order included.

**Export of other trajectories** (chat, ShareGPT, the built-in suites): one row per assistant turn,
or per state of a pivot profile (`turns=`), with `agent_ref` naming the NeMo-Gym agent that will
judge them. A turn whose assistant message has both text and calls exports its calls (the
contract's action has no place for the text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pivot_envs.errors import TrajectoryError
from pivot_envs.formats.common import (
    Where,
    derive_id,
    link_tool_names,
    nested_tool,
    require_object,
    text_of,
    tool_call,
)
from pivot_envs.trajectory import (
    Trajectory,
    tool_calls_of,
    unknown_domain,
    validate_record,
)

NAME = "nemo_gym"
KEY = "nemo_gym"  # task[KEY]: what the trajectory does not represent
DEFAULT_AGENT = {"type": "responses_api_agents", "name": "pivotrl_tool_use_agent"}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


# ----------------------------------------------------------------------------- items <-> messages

def items_to_messages(items: Any, where: Where, field: str = "responses_create_params.input") -> list[dict[str, Any]]:
    """Responses-API input items -> chat messages (rules in the module docstring)."""
    if isinstance(items, str):  # the API also takes a bare string as one user message
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        where.fail(f"must be a list of Responses-API items, got {type(items).__name__}", field)
    out: list[dict[str, Any]] = []
    joinable = False  # may a function_call item join the last assistant message?
    for i, item in enumerate(items):
        f = f"{field}[{i}]"
        if not isinstance(item, dict):
            where.fail(f"an input item must be an object, got {type(item).__name__}", f)
        kind = item.get("type", "message")
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is None:
                where.fail(f"unknown role {item.get('role')!r}; use one of {sorted(_ROLES)}", f + ".role")
            out.append({"role": role, "content": text_of(item.get("content"), where, f + ".content")})
            joinable = role == "assistant"
        elif kind == "function_call":
            if not isinstance(item.get("name"), str):
                where.fail("a function_call item needs a string 'name'", f + ".name")
            call = tool_call(item["name"], item.get("arguments", "{}"), str(item.get("call_id") or f"call_{i}"))
            if not joinable:
                out.append({"role": "assistant", "content": ""})
            out[-1].setdefault("tool_calls", []).append(call)
            joinable = True
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                        "content": text_of(item.get("output"), where, f + ".output")})
            joinable = False
        elif kind != "reasoning":
            where.fail(f"unsupported input item type {kind!r} (message, function_call, function_call_output, "
                       "reasoning)", f + ".type")
    link_tool_names(out)
    return out


def messages_to_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages -> Responses-API input items (the canonical spelling: string contents)."""
    items: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": m.get("tool_call_id", ""),
                          "output": m.get("content") or ""})
            continue
        calls = (m.get("tool_calls") or []) if m["role"] == "assistant" else []
        if m.get("content") or not calls:
            items.append({"role": m["role"], "content": m.get("content") or ""})
        for c in calls:
            fn = c["function"]
            args = fn.get("arguments", "{}")
            items.append({"type": "function_call", "call_id": c.get("id", ""), "name": fn["name"],
                          "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)})
    return items


def flat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    return {"type": "function", "name": fn["name"], "description": fn.get("description", ""),
            "parameters": fn.get("parameters", {"type": "object", "properties": {}})}


# ----------------------------------------------------------------------------- expected action <-> message

def action_to_message(action: Any, where: Where) -> dict[str, Any]:
    action = action if isinstance(action, dict) else where.fail("must be an object with a 'type'", "expected_action")
    kind = action.get("type")
    if kind == "message":
        if not isinstance(action.get("content"), str) or not action["content"].strip():
            where.fail("a message action needs a non-empty string 'content'", "expected_action.content")
        return {"role": "assistant", "content": action["content"]}
    if kind == "function_call":
        calls = [action]
    elif kind == "function_call_batch":
        calls = action.get("calls")
        if not isinstance(calls, list) or not calls:
            where.fail("a function_call_batch needs a non-empty list 'calls'", "expected_action.calls")
    else:
        where.fail(f"unknown action type {kind!r}; use function_call, function_call_batch or message",
                   "expected_action.type")
    out = []
    for j, c in enumerate(calls):
        f = "expected_action" if kind == "function_call" else f"expected_action.calls[{j}]"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            where.fail("a function_call needs a string 'name'", f + ".name")
        if not isinstance(c.get("arguments", "{}"), str):
            where.fail("'arguments' must be a JSON-encoded object string", f + ".arguments")
        out.append(tool_call(c["name"], c.get("arguments", "{}"), str(c.get("call_id") or f"call_expected_{j}")))
    return {"role": "assistant", "content": "", "tool_calls": out}


def message_to_action(message: dict[str, Any]) -> dict[str, Any]:
    calls = [{"type": "function_call", "name": c["function"]["name"],
              "arguments": c["function"]["arguments"] if isinstance(c["function"].get("arguments"), str)
              else json.dumps(c["function"].get("arguments", {}), ensure_ascii=False)}
             for c in message.get("tool_calls") or []]
    if not calls:
        return {"type": "message", "content": message.get("content") or ""}
    return calls[0] if len(calls) == 1 else {"type": "function_call_batch", "calls": calls}


# ----------------------------------------------------------------------------- import

def to_trajectory(rec: Any, where: Where, domain: str = "tooluse") -> dict[str, Any]:
    """One NeMo-Gym pivot row -> one trajectory dict whose last turn is the row's expected action."""
    row = require_object(rec, where)
    for key in ("responses_create_params", "expected_action"):
        if key not in row:
            where.fail("missing required field: a NeMo-Gym pivot row needs responses_create_params and "
                       "expected_action", key)
    params = row["responses_create_params"]
    if not isinstance(params, dict) or "input" not in params:
        where.fail("must be an object with 'input' (Responses-API items)", "responses_create_params")
    bad = unknown_domain(domain)
    if bad:
        where.fail(bad, "domain")
    raw_tools = params.get("tools") or []
    if not isinstance(raw_tools, list):
        where.fail("must be a list of function specs", "responses_create_params.tools")
    tools = [nested_tool(t, where, f"responses_create_params.tools[{i}]") for i, t in enumerate(raw_tools)]
    messages = items_to_messages(params["input"], where) + [action_to_message(row["expected_action"], where)]
    kept: dict[str, Any] = {"row": {k: v for k, v in row.items() if k not in ("responses_create_params", "expected_action")},
                            "row_keys": list(row), "params": {k: v for k, v in params.items() if k not in ("input", "tools")},
                            "params_keys": list(params)}
    if messages_to_items(messages[:-1]) != params["input"]:
        kept["input"] = params["input"]
    if [flat_tool(t) for t in tools] != raw_tools:
        kept["tools"] = raw_tools
    if message_to_action(messages[-1]) != row["expected_action"]:
        kept["expected_action"] = row["expected_action"]
    traj = {"id": derive_id(row, where, ("id", "uuid", "task_id")), "domain": domain,
            "task": {KEY: kept}, "tools": tools, "messages": messages}
    validate_record(traj, line=where.line, source=where.source)
    return traj


# ----------------------------------------------------------------------------- export

def _action_view(message: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """What an expected action says: its text (calls carry none in the contract) and its calls."""
    calls = [(c.name, c.raw_arguments if c.raw_arguments is not None and not c.arguments
              else json.dumps(c.arguments, sort_keys=True)) for c in tool_calls_of(message)]
    return ("" if calls else message.get("content") or "", calls)


def _kept_if_unchanged(kept: dict[str, Any], key: str, derived_now: Any, derive: Any) -> Any:
    """The original `kept[key]` when the trajectory still derives from it, else None."""
    if key not in kept:
        return None
    try:
        return kept[key] if derive(kept[key]) == derived_now else None
    except TrajectoryError:  # a kept original that no longer reads: rebuild instead
        return None


def row_at(traj: Trajectory, k: int, agent_ref: dict[str, Any] | None = None) -> dict[str, Any]:
    """The NeMo-Gym pivot row of turn k of `traj`."""
    where = Where(f"trajectory {traj.id!r}", k)
    prefix, reference = traj.prefix(k), traj.reference(k)
    kept = traj.task.get(KEY, {}) if k == traj.num_turns - 1 else {}
    items = _kept_if_unchanged(kept, "input", prefix, lambda v: items_to_messages(v, where))
    tools = _kept_if_unchanged(kept, "tools", traj.tools, lambda v: [nested_tool(t, where, "tools") for t in v])
    action = _kept_if_unchanged(kept, "expected_action", _action_view(reference),
                                lambda v: _action_view(action_to_message(v, where)))
    params = {**kept.get("params", {}), "input": items if items is not None else messages_to_items(prefix),
              "tools": tools if tools is not None else [flat_tool(t) for t in traj.tools]}
    if "params_keys" in kept and "tools" not in kept["params_keys"] and not params["tools"]:
        del params["tools"]
    params = {key: params[key] for key in [*kept.get("params_keys", []), *params] if key in params}
    row = {**kept.get("row", {"id": f"{traj.id}-turn{k}", "agent_ref": DEFAULT_AGENT}),
           "responses_create_params": params,
           "expected_action": action if action is not None else message_to_action(reference)}
    if agent_ref is not None:  # asked for: it replaces an imported row's own
        row["agent_ref"] = agent_ref
    return {key: row[key] for key in [*kept.get("row_keys", []), *row] if key in row}


def export_rows(trajectories: Iterable[Trajectory], turns: dict[str, list[int]] | None = None,
                agent_ref: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows for `turns` ({trajectory id: turns}; default: the imported row's turn for a trajectory
    that came from NeMo-Gym, every turn for any other)."""
    rows: list[dict[str, Any]] = []
    for t in trajectories:
        if turns is not None:
            ks = turns.get(t.id, [])
        elif KEY in t.task:
            ks = [t.num_turns - 1]
        else:
            ks = list(range(t.num_turns))
        rows.extend(row_at(t, k, agent_ref) for k in ks)
    return rows
