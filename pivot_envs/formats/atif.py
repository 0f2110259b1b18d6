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

Paired with its Harbor task folder (`pivotrl data convert --from atif RUN.json --task-dir TASK`), a run
becomes a *terminal* trajectory instead: `terminal_turns` maps the agent's shell tool calls onto the
terminal domain's one `bash(command)` tool (rules in its docstring), and
`pivot_envs.domains.terminal.harbor.agent_runs` adds the task (image, test) and checks the run there.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pivot_envs.errors import TrajectoryError
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



# ----------------------------------------------------------------------------- terminal runs

# Tools whose call runs a shell command, as agents on Harbor name them (Terminus: `bash_command` with
# tmux `keystrokes`; OpenHands: `execute_bash`; Claude Code: `Bash`; Codex: `shell` with an argv list;
# Gemini CLI: `run_shell_command`; mini-swe-agent and most others: `bash`). Names compare lower-cased.
SHELL_TOOLS = frozenset({"bash", "bash_command", "execute_bash", "shell", "run_shell_command", "terminal",
                         "run_command", "execute_command", "exec_command", "run_terminal_cmd"})
COMMAND_ARGUMENTS = ("command", "cmd", "keystrokes")
# Calls that say "I am done" (Terminus' `mark_task_complete`, ...): the turn is the closing message.
COMPLETION_TOOLS = frozenset({"mark_task_complete", "task_complete", "finish", "submit", "attempt_completion"})
# tmux key names an agent sends instead of a command line (interrupts, editors, pagers).
_TMUX_KEY_RE = re.compile(r"^(?:[CM]-\S|Escape|Enter|Tab|BSpace|Up|Down|Left|Right|Home|End|PageUp|PageDown|"
                          r"NPage|PPage|F\d+)$")


class AtifStepError(TrajectoryError):
    """An ATIF step that has no terminal meaning (a non-shell tool, keystrokes that are not a whole
    command line). `step` is its index in `steps`; the message names the file, line, field and why."""

    def __init__(self, message: str, *, step: int, where: Where, field: str):
        super().__init__(message, line=where.line, field=field, source=where.source)
        self.step = step


def _shell_command(call: dict[str, Any], where: Where, i: int, g: str) -> str | None:
    """The command line of a shell tool call; None for an empty Terminus keystroke (a wait)."""
    args = call.get("arguments", {})
    if not isinstance(args, dict):
        raise AtifStepError(f"'arguments' must be a JSON object, got {type(args).__name__}", step=i, where=where,
                            field=g + ".arguments")
    key = next((k for k in COMMAND_ARGUMENTS if k in args), None)
    if key is None:
        raise AtifStepError(f"shell tool {call['function_name']!r} has none of the arguments {list(COMMAND_ARGUMENTS)}",
                            step=i, where=where, field=g + ".arguments")
    value = args[key]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        # an argv (Codex' shell tool): `bash -lc SCRIPT` is the script itself
        if len(value) == 3 and value[0] in ("bash", "sh", "/bin/bash", "/bin/sh") and value[1] in ("-c", "-lc"):
            return value[2]
        return shlex.join(value)
    if not isinstance(value, str):
        raise AtifStepError(f"argument {key!r} must be a string (or an argv list), got {type(value).__name__}",
                            step=i, where=where, field=f"{g}.arguments.{key}")
    if key != "keystrokes":
        return value if value.strip() else None
    if not value.strip():
        return None  # Terminus waits for a running command by sending no keys
    if _TMUX_KEY_RE.match(value.strip()):
        raise AtifStepError(f"keystrokes {value.strip()!r} are an interactive key, not a command line: a terminal "
                            "trajectory runs whole commands, one bash call each", step=i, where=where,
                            field=f"{g}.arguments.keystrokes")
    if not value.endswith("\n"):
        raise AtifStepError(f"keystrokes {value[:60]!r} do not end with Enter (a newline): typed into a running "
                            "program or left unfinished, they are not a command the terminal domain can run",
                            step=i, where=where, field=f"{g}.arguments.keystrokes")
    return value[:-1]


def _bash_call(command: str, call_id: str) -> dict[str, Any]:
    return tool_call("bash", {"command": command}, call_id)


def terminal_turns(rec: Any, where: Where, *, closing_message: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An ATIF run -> the assistant / tool / user messages of a terminal trajectory (after the task's
    system prompt and instruction, which the caller adds), and what the run says about itself.

    - The system and user steps before the agent's first step are the agent's own prompt (its tool
      vocabulary, its output format): the terminal trajectory states the task with the terminal
      domain's prompt instead. Later user steps stay user messages; later system steps (context
      management) are not part of the conversation and are dropped.
    - A shell tool call (`SHELL_TOOLS`; the command in `command`, `cmd` or Terminus' `keystrokes`, which
      must end with Enter; an argv list is joined) -> a `bash` call. Results that answer each call by
      `source_call_id` -> one tool message per call; results that answer none (Terminus reads the
      screen back once per step) -> the step's commands joined into one bash call whose output is
      the step's screen text. Empty keystrokes (a wait) are no command: a step that only waited is no
      turn, and the screen it read back is appended to the previous tool output.
    - A completion call (`COMPLETION_TOOLS`) or an agent message with no call -> an assistant message
      (the message, or `closing_message` when the agent said nothing). A run that ends on a command
      gets `closing_message` as its last turn.
    - Any other tool, interactive keys, malformed calls: `AtifStepError` naming the step and field.
    """
    rec = require_object(rec, where)
    steps = rec.get("steps")
    if not isinstance(steps, list) or not steps:
        where.fail("an ATIF trajectory needs a non-empty list 'steps'", "steps")
    messages: list[dict[str, Any]] = []
    started = False
    for i, step in enumerate(steps):
        f = f"steps[{i}]"
        if not isinstance(step, dict):
            where.fail(f"a step must be an object, got {type(step).__name__}", f)
        source = step.get("source")
        if source not in ("system", "user", "agent"):
            where.fail(f"unknown step source {source!r}; use system, user or agent", f + ".source")
        text = text_of(step.get("message", ""), where, f + ".message")
        if source != "agent":
            if started and source == "user" and text.strip():
                messages.append({"role": "user", "content": text})
            continue
        started = True
        turn = _terminal_step(step, text, where, i, closing_message)
        if turn is None:  # a wait: what the screen showed after it belongs to the command waited for
            screen = "\n".join(_content(r) for r in _results(step, where, f"steps[{i}]"))
            if messages and messages[-1]["role"] == "tool" and screen:
                messages[-1]["content"] += "\n" + screen
            continue
        messages.extend(turn)
    if not any(m["role"] == "assistant" for m in messages):
        where.fail("the run has no agent action (no shell call and no agent message)", "steps")
    if messages[-1]["role"] != "assistant" or messages[-1].get("tool_calls"):
        messages.append({"role": "assistant", "content": closing_message})
    meta = {k: rec[k] for k in ("schema_version", "session_id", "agent", "final_metrics", "notes") if k in rec}
    return messages, meta


def _terminal_step(step: dict[str, Any], text: str, where: Where, i: int,
                   closing: str) -> list[dict[str, Any]] | None:
    """The messages of one agent step; None for a step that only waited (Terminus' empty keystrokes)."""
    f = f"steps[{i}]"
    raw = step.get("tool_calls") or []
    if not isinstance(raw, list):
        where.fail("must be a list of {tool_call_id, function_name, arguments}", f + ".tool_calls")
    commands: list[tuple[str, str]] = []  # (call id, command)
    done = waited = False
    for j, c in enumerate(raw):
        g = f"{f}.tool_calls[{j}]"
        if not isinstance(c, dict) or not isinstance(c.get("function_name"), str):
            where.fail("a tool call needs a string 'function_name'", g + ".function_name")
        name = c["function_name"]
        if name.lower() in COMPLETION_TOOLS:
            done = True
        elif name.lower() in SHELL_TOOLS:
            command = _shell_command(c, where, i, g)
            if command is None:
                waited = True
            else:
                commands.append((str(c.get("tool_call_id") or f"step{i}_call{j}"), command))
        else:
            raise AtifStepError(f"tool {name!r} is not a shell tool: a terminal trajectory has one tool, bash, and "
                                f"only calls that run a command map onto it (shell tools: {sorted(SHELL_TOOLS)})",
                                step=i, where=where, field=g + ".function_name")
    if waited and not commands and not done:
        return None
    results = _results(step, where, f)
    out: list[dict[str, Any]] = []
    if commands:
        by_id = {r.get("source_call_id"): r for r in results if r.get("source_call_id") is not None}
        if by_id and all(cid in by_id for cid, _ in commands):
            out.append({"role": "assistant", "content": text,
                        "tool_calls": [_bash_call(cmd, cid) for cid, cmd in commands]})
            out.extend({"role": "tool", "tool_call_id": cid, "name": "bash", "content": _content(by_id[cid])}
                       for cid, _ in commands)
        else:  # one screen for the whole step: its commands ran in order in one shell
            cid = commands[0][0]
            out.append({"role": "assistant", "content": text,
                        "tool_calls": [_bash_call("\n".join(cmd for _, cmd in commands), cid)]})
            out.append({"role": "tool", "tool_call_id": cid, "name": "bash",
                        "content": "\n".join(_content(r) for r in results)})
        if done:
            out.append({"role": "assistant", "content": closing})
    elif done or text.strip():
        out.append({"role": "assistant", "content": text if text.strip() else closing})
    return out


def _results(step: dict[str, Any], where: Where, f: str) -> list[dict[str, Any]]:
    obs = step.get("observation")
    if obs is None:
        return []
    results = obs.get("results") if isinstance(obs, dict) else None
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        where.fail("an observation must be an object with a list 'results' of objects", f + ".observation")
    return results


def _content(result: dict[str, Any]) -> str:
    content = result.get("content")
    return content if isinstance(content, str) else "" if content is None else json.dumps(content, ensure_ascii=False)
