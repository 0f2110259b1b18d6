"""Harbor ATIF agent trajectories -> pivotrl trajectories (tool use, backend-free).

ATIF (the Agent Trajectory Interchange Format, Harbor's RFC 0001) logs one agent run as
`{"schema_version", "session_id", "agent": {...}, "steps": [...], ...}`; each step has a `source`
("system" | "user" | "agent") and a `message`; agent steps may carry `tool_calls`
(`{"tool_call_id", "function_name", "arguments": {...}}`) and an `observation` whose `results` answer
them (`{"source_call_id", "content"}`). A file holds one trajectory (pretty-printed JSON), or one per
line.

Mapping:
- system / user steps -> system / user messages; an agent step -> one assistant message (its message
  as content, its calls as `tool_calls`); `reasoning_content` and `metrics` are not part of the action
  and are dropped (run-level fields other than `steps` are kept in `task["meta"]`);
- an observation result that answers a call -> a tool message; one that answers no call (agents such
  as Terminus write their commands in the message text and get the terminal back) -> a user message,
  which is how the agent saw it;
- an agent step with no text and no call is not an action: only its observation is kept;
- tools: `agent.tool_definitions` when the trajectory declares them (OpenAI form, nested or flat),
  else one schema per called function with the argument names and JSON types seen in its calls, so
  the calls can be judged by the canonical verifier;
- id: `session_id`; domain: `tooluse`, backend-free (commands in free text are judged as messages).

Not done: pairing a trajectory with its Harbor task folder to make a terminal task (the recorded
commands replayed in the task's sandbox image). That needs the image built and each agent's tool
vocabulary mapped onto the terminal domain's one `bash(command)` tool.
"""

from __future__ import annotations

import json
from typing import Any

from pivot_envs.formats.common import (
    Where,
    derive_domain,
    derive_id,
    link_tool_names,
    parse_tools,
    require_object,
    text_of,
    tool_call,
)
from pivot_envs.trajectory import validate_record

NAME = "atif"
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
               (dict, "object"))


def _json_type(value: Any) -> str | None:
    return next((name for typ, name in _JSON_TYPES if isinstance(value, typ)), None)


def inferred_tools(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One schema per called function: the argument names seen in its calls, typed when every call
    agrees on the JSON type; nothing required (a call that omits an argument is not wrong by schema)."""
    seen: dict[str, dict[str, set[str | None]]] = {}
    for m in messages:
        for c in m.get("tool_calls") or []:
            props = seen.setdefault(c["function"]["name"], {})
            for k, v in json.loads(c["function"]["arguments"]).items():
                props.setdefault(k, set()).add(_json_type(v))
    return [{"type": "function", "function": {
        "name": name, "description": "(schema inferred from the recorded calls)",
        "parameters": {"type": "object", "properties": {
            k: ({"type": next(iter(types))} if len(types) == 1 and None not in types else {})
            for k, types in props.items()}}}} for name, props in seen.items()]


def _agent_step(step: dict[str, Any], where: Where, f: str) -> tuple[dict[str, Any] | None, set[str]]:
    content = text_of(step.get("message", ""), where, f + ".message")
    calls = []
    raw = step.get("tool_calls") or []
    if not isinstance(raw, list):
        where.fail("must be a list of {tool_call_id, function_name, arguments}", f + ".tool_calls")
    for j, c in enumerate(raw):
        g = f"{f}.tool_calls[{j}]"
        if not isinstance(c, dict) or not isinstance(c.get("function_name"), str):
            where.fail("a tool call needs a string 'function_name'", g + ".function_name")
        args = c.get("arguments", {})
        if not isinstance(args, dict):
            where.fail(f"'arguments' must be a JSON object, got {type(args).__name__}", g + ".arguments")
        calls.append(tool_call(c["function_name"], args, str(c.get("tool_call_id") or f"{f}_call_{j}")))
    if not calls and not content.strip():
        return None, set()
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = calls
    return msg, {c["id"] for c in calls}


def _observations(step: dict[str, Any], call_ids: set[str], where: Where, f: str) -> list[dict[str, Any]]:
    obs = step.get("observation")
    if obs is None:
        return []
    results = obs.get("results") if isinstance(obs, dict) else None
    if not isinstance(results, list):
        where.fail("an observation must be an object with a list 'results'", f + ".observation")
    out = []
    for j, r in enumerate(results):
        g = f"{f}.observation.results[{j}]"
        if not isinstance(r, dict):
            where.fail("a result must be an object", g)
        content = r.get("content")
        if content is None and r.get("subagent_trajectory_ref"):
            content = "(delegated to a subagent: " + ", ".join(
                str(x.get("session_id")) for x in r["subagent_trajectory_ref"] if isinstance(x, dict)) + ")"
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        source = r.get("source_call_id")
        if source is not None and str(source) in call_ids:
            out.append({"role": "tool", "tool_call_id": str(source), "content": text})
        else:
            out.append({"role": "user", "content": text})
    return out


def to_trajectory(rec: Any, where: Where) -> dict[str, Any]:
    """One ATIF trajectory -> one trajectory dict (validated: errors name the file, line and field)."""
    rec = require_object(rec, where)
    steps = rec.get("steps")
    if not isinstance(steps, list) or not steps:
        where.fail("an ATIF trajectory needs a non-empty list 'steps'", "steps")
    messages: list[dict[str, Any]] = []
    roles = {"system": "system", "user": "user"}
    for i, step in enumerate(steps):
        f = f"steps[{i}]"
        if not isinstance(step, dict):
            where.fail(f"a step must be an object, got {type(step).__name__}", f)
        source = step.get("source")
        if source in roles:
            messages.append({"role": roles[source], "content": text_of(step.get("message", ""), where, f + ".message")})
            messages.extend(_observations(step, set(), where, f))
        elif source == "agent":
            msg, call_ids = _agent_step(step, where, f)
            if msg is not None:
                messages.append(msg)
            messages.extend(_observations(step, call_ids, where, f))
        else:
            where.fail(f"unknown step source {source!r}; use system, user or agent", f + ".source")
    link_tool_names(messages)
    agent = rec.get("agent") if isinstance(rec.get("agent"), dict) else {}
    declared = agent.get("tool_definitions")
    tools = parse_tools(declared, where, "agent.tool_definitions") if declared else inferred_tools(messages)
    meta = {k: v for k, v in rec.items() if k != "steps"}
    traj = {"id": derive_id(rec, where, ("session_id", "id")), "domain": derive_domain(rec, where, "tooluse"),
            "task": {"meta": meta} if meta else {}, "tools": tools, "messages": messages}
    validate_record(traj, line=where.line, source=where.source)
    return traj
