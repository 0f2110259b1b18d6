"""What every importer needs: reading records with their line numbers, tool schemas in the nested
OpenAI form, Hermes `<tool_call>` text, ids and domains derived when a record has none.

Each importer turns one source record into one pivotrl trajectory dict (see `pivot_envs/trajectory.py`
and `docs/trajectory_format.md`). Errors are `TrajectoryError`s naming the input file, the line (or,
for a JSON array file, the record number) and the field of the *source* format, so a user can find
and fix the record they wrote, not the one we derived from it.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from pivot_envs.errors import TrajectoryError
from pivot_envs.trajectory import unknown_domain, validate_record


@dataclasses.dataclass(frozen=True)
class Where:
    """A record's place in its file, for error messages (`line` is the record number in a JSON array)."""

    source: str
    line: int

    def fail(self, message: str, field: str) -> NoReturn:
        raise TrajectoryError(message, line=self.line, field=field, source=self.source)


def read_records(path: str | os.PathLike) -> Iterator[tuple[Any, Where]]:
    """(record, where) for every record of a JSON Lines file, of a file holding one JSON array
    (ShareGPT sets are often shipped that way), or of a file holding one pretty-printed object (an
    ATIF trajectory.json). Blank lines are skipped; bad JSON names its line."""
    path = Path(path)
    if not path.exists():
        raise TrajectoryError(f"input file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise TrajectoryError("the file is empty: expected one JSON object per line", source=str(path))
    first = text.lstrip().split("\n", 1)[0]
    if first.strip() == "{":  # one object over many lines
        try:
            yield json.loads(text), Where(str(path), 1)
        except json.JSONDecodeError as e:
            raise TrajectoryError(f"not valid JSON ({e.msg})", line=e.lineno, field="<json>", source=str(path)) from None
        return
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise TrajectoryError(f"not valid JSON ({e.msg})", line=e.lineno, field="<json>", source=str(path)) from None
        for i, rec in enumerate(records, start=1):
            yield rec, Where(str(path), i)
        return
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            raise TrajectoryError(f"not valid JSON ({e.msg} at column {e.colno})", line=lineno, field="<json>",
                                  source=str(path)) from None
        yield rec, Where(str(path), lineno)


def require_object(rec: Any, where: Where) -> dict[str, Any]:
    if not isinstance(rec, dict):
        where.fail(f"expected a JSON object, got {type(rec).__name__}", "<record>")
    return rec


# ----------------------------------------------------------------------------- ids and domains

def derive_id(rec: dict[str, Any], where: Where, keys: tuple[str, ...] = ("id", "conversation_id", "uuid")) -> str:
    """The record's own id when it has one (first of `keys`), else `<file stem>-<line>`: stable for a
    given file, unique within it, and it says where the record came from."""
    for key in keys:
        value = rec.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)
    return f"{Path(where.source).stem}-{where.line}"


def derive_domain(rec: dict[str, Any], where: Where, default: str) -> str:
    """`domain` from the record when present (checked), else `default` (tool use for chat data: a
    plain chat record carries no sandbox task, so it cannot be a terminal or SWE task)."""
    domain = rec.get("domain", default)
    bad = unknown_domain(domain)
    if bad:
        where.fail(bad, "domain")
    return str(domain)


def chat_like_trajectory(rec: Any, where: Where, conversation: str, own_fields: tuple[str, ...],
                         messages: Callable[[dict[str, Any]], list[dict[str, Any]]]) -> dict[str, Any]:
    """The trajectory of a chat-like record (chat JSONL, ShareGPT): `messages(rec)` converts its
    `conversation` field; `id`, `domain` and `task` are the record's own when present, derived
    otherwise; every top-level field the format does not define (`own_fields`) is kept in
    `task["meta"]`. Validated, so every error names the file, line and field."""
    rec = require_object(rec, where)
    if conversation not in rec:
        where.fail(f"missing required field: this format's records hold the conversation in {conversation!r}",
                   conversation)
    task = rec.get("task", {})
    if not isinstance(task, dict):
        where.fail(f"must be an object, got {type(task).__name__}", "task")
    meta = {k: v for k, v in rec.items() if k not in (*own_fields, conversation, "tools", "id", "domain", "task")}
    if meta:
        task = {**task, "meta": meta}
    converted = messages(rec)
    tools = parse_tools(rec.get("tools"), where) if rec.get("tools") else tools_in_system_prompt(converted, where)
    traj = {"id": derive_id(rec, where), "domain": derive_domain(rec, where, "tooluse"), "task": task,
            "tools": tools, "messages": converted}
    validate_record(traj, line=where.line, source=where.source)
    return traj


# ----------------------------------------------------------------------------- tools

def nested_tool(tool: Any, where: Where, field: str) -> dict[str, Any]:
    """One tool schema in the nested OpenAI form `{"type": "function", "function": {name, description,
    parameters}}`. Accepts that form and the flat one (`{"name", "description", "parameters"}`, with or
    without `"type": "function"`: the Responses API and most ShareGPT sets write it flat)."""
    if not isinstance(tool, dict):
        where.fail(f"a tool must be an object, got {type(tool).__name__}", field)
    fn: dict[str, Any] = tool["function"] if isinstance(tool.get("function"), dict) else tool
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        where.fail("a tool needs a string 'name' (flat) or 'function.name' (nested)", field)
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        where.fail(f"'parameters' must be a JSON schema object, got {type(params).__name__}", field)
    out: dict[str, Any] = {"name": name, "description": fn.get("description", "") or "", "parameters": params}
    return {"type": "function", "function": out}


def parse_tools(value: Any, where: Where, field: str = "tools") -> list[dict[str, Any]]:
    """A tool list given as a list or as a JSON string of one (ShareGPT's convention); None = no tools."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            where.fail(f"a tools string must hold a JSON list of tool schemas ({e.msg})", field)
    if isinstance(value, dict):  # a single tool
        value = [value]
    if not isinstance(value, list):
        where.fail(f"must be a list of tool schemas (or a JSON string of one), got {type(value).__name__}", field)
    return [nested_tool(t, where, f"{field}[{i}]") for i, t in enumerate(value)]


# ----------------------------------------------------------------------------- tool calls

def tool_call(name: str, arguments: Any, call_id: str) -> dict[str, Any]:
    """An OpenAI `tool_calls` entry. A string of arguments is kept as written (exporters give it back
    byte for byte); an object is encoded as JSON."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {},
                                                                    ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def call_from_object(obj: Any, where: Where, field: str, call_id: str) -> dict[str, Any]:
    """`{"name": ..., "arguments": {...} | "..."}` (Hermes, ShareGPT function_call) -> a tool_calls entry."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        where.fail("a tool call must be an object with a string 'name' and 'arguments'", field)
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(args, (str, dict)):
        where.fail(f"tool-call arguments must be an object or a JSON string, got {type(args).__name__}", field)
    return tool_call(obj["name"], args, str(obj.get("id") or call_id))


_TOOLS_RE = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)


def tools_in_system_prompt(messages: list[dict[str, Any]], where: Where) -> list[dict[str, Any]]:
    """Hermes-style sets list the tools in the system prompt, `<tools> [...] </tools>` (a JSON list, one
    JSON object per line, or a Python literal as some sets print it), instead of a `tools` field."""
    system = next((m.get("content") or "" for m in messages if m["role"] == "system"), "")
    blocks = [m.group(1).strip() for m in _TOOLS_RE.finditer(system)]  # the prompt may mention "<tools></tools>"
    body = next((b for b in blocks if b), None)
    if body is None:
        return []
    for parse in (json.loads, lambda b: [json.loads(line) for line in b.splitlines() if line.strip()], ast.literal_eval):
        try:
            value = parse(body)
        except (ValueError, SyntaxError):
            continue
        return parse_tools(value, where, "system prompt <tools>")
    where.fail("the <tools> block of the system prompt is neither JSON nor a Python literal", "system prompt <tools>")


_HERMES_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_RESPONSE_RE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)


def split_hermes(text: str, where: Where, field: str, id_prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """Assistant text with Hermes `<tool_call>{json}</tool_call>` blocks -> (the text outside the
    blocks, tool_calls). Text without blocks is returned as it is, with no calls."""
    if "<tool_call>" not in text:
        return text, []
    calls = []
    for i, m in enumerate(_HERMES_RE.finditer(text)):
        try:
            obj = json.loads(m.group(1).strip())
        except json.JSONDecodeError as e:
            where.fail(f"<tool_call> block {i} is not valid JSON ({e.msg})", field)
        calls.append(call_from_object(obj, where, f"{field} <tool_call> {i}", f"{id_prefix}_{i}"))
    if text.count("<tool_call>") != len(calls):
        where.fail("a <tool_call> block is not closed with </tool_call>", field)
    return _HERMES_RE.sub("", text).strip(), calls


def hermes_responses(text: str) -> list[str] | None:
    """The bodies of a user message made only of `<tool_response>` blocks (how Hermes-style chat sets
    record tool outputs), else None."""
    bodies = [m.group(1).strip() for m in _RESPONSE_RE.finditer(text)]
    if not bodies or _RESPONSE_RE.sub("", text).strip():
        return None
    return bodies


def text_of(content: Any, where: Where, field: str) -> str:
    """Message content as text: a string, or a list of content parts whose `text` is joined (the
    multimodal chat form and the Responses API's `input_text` / `output_text` parts)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        where.fail(f"content must be a string or a list of text parts, got {type(content).__name__}", field)
    for i, part in enumerate(content):
        if not isinstance(part, str) and not (isinstance(part, dict) and isinstance(part.get("text"), str)):
            where.fail("only text content parts are supported (an object with a string 'text')", f"{field}[{i}]")
    return "".join(p if isinstance(p, str) else p["text"] for p in content)


def link_tool_names(messages: list[dict[str, Any]]) -> None:
    """Give each tool message the `name` of the call it answers (by `tool_call_id`, else the calls of
    the assistant message before it, in order), so the trajectory reads well and renders with names."""
    pending: list[dict[str, Any]] = []
    by_id: dict[str, str] = {}
    for m in messages:
        if m["role"] == "assistant":
            pending = list(m.get("tool_calls") or [])
            by_id.update({c["id"]: c["function"]["name"] for c in pending if c.get("id")})
        elif m["role"] == "tool":
            name = by_id.get(m.get("tool_call_id") or "")
            if name is None and pending:
                call = pending.pop(0)
                name = call["function"]["name"]
                m.setdefault("tool_call_id", call.get("id", ""))
            elif pending:
                pending = [c for c in pending if c.get("id") != m.get("tool_call_id")]
            if name and not m.get("name"):
                m["name"] = name
