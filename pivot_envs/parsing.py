"""Turning model text into an action: pluggable tool-call parsers.

The default, `hermes`, reads Hermes/Qwen style calls:

    some optional text
    <tool_call>
    {"name": "bash", "arguments": {"command": "ls"}}
    </tool_call>

A parse problem is not an exception: `ParsedAction.error` says what was wrong, and the verifier turns it
into a reward-0 verdict with that reason.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from pivot_envs.trajectory import ToolCall, tool_calls_of


@dataclasses.dataclass
class ParsedAction:
    content: str
    tool_calls: list[ToolCall]
    error: str | None = None  # why the action could not be parsed (bad JSON, unknown tool, ...)
    raw: str = ""

    @property
    def is_message(self) -> bool:
        return not self.tool_calls and self.error is None

    def to_message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content or ""}
        if self.tool_calls:
            msg["tool_calls"] = [dict(c.to_openai(), id=c.id or f"call_{i}") for i, c in enumerate(self.tool_calls)]
        elif self.error and self.raw:
            msg["content"] = self.raw  # keep what the model said, so the next turn sees it
        return msg


def render_tool_call(name: str, arguments: dict[str, Any], content: str = "") -> str:
    """Model text for one Hermes tool call (what `parse_hermes` reads back into the same call):
    optional `content` first, then `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`,
    the layout the project's chat template gives an assistant tool call."""
    call = "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>"
    return f"{content}\n{call}" if content else call


def render_bash_call(command: str) -> str:
    """Model text for one `bash` call running `command`."""
    return render_tool_call("bash", {"command": command})


_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


def parse_hermes(text: str) -> ParsedAction:
    """Parse `<tool_call>{json}</tool_call>` blocks; the text outside them is the content."""
    if "<tool_call>" not in text:
        stray = "</tool_call>" in text
        return ParsedAction(text.strip(), [], "found </tool_call> without <tool_call>" if stray else None, text)
    content = text[: text.index("<tool_call>")].strip()
    calls: list[ToolCall] = []
    for i, m in enumerate(_TOOL_CALL_RE.finditer(text)):
        body = m.group(1).strip()
        if not m.group(0).endswith("</tool_call>"):
            return ParsedAction(content, [], f"tool call {i} is not closed with </tool_call>", text)
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as e:
            return ParsedAction(content, [], f"tool call {i} is not valid JSON ({e.msg})", text)
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return ParsedAction(content, [], f"tool call {i} must be an object with a string 'name'", text)
        args = obj.get("arguments", {})
        if isinstance(args, str):  # some models double-encode
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return ParsedAction(content, [], f"tool call {i}: 'arguments' is a string that is not JSON", text)
        if not isinstance(args, dict):
            return ParsedAction(content, [], f"tool call {i}: 'arguments' must be an object", text)
        calls.append(ToolCall(obj["name"], args, id=f"call_{i}"))
    return ParsedAction(content, calls, None, text)


PARSERS: dict[str, Callable[[str], ParsedAction]] = {"hermes": parse_hermes}


def register_parser(name: str, fn: Callable[[str], ParsedAction]) -> None:
    """Add a tool-call parser (text -> ParsedAction) under `name`, for `gym.make(..., parser=name)`."""
    PARSERS[name] = fn


def parse_action(action: str | dict | ParsedAction, parser: str | Callable[[str], ParsedAction] = "hermes",
                 tools: list[dict] | None = None) -> ParsedAction:
    """Accept model text, an assistant-message dict or a ParsedAction; check tool names against `tools`."""
    if isinstance(action, ParsedAction):
        parsed = action
    elif isinstance(action, dict):
        calls = tool_calls_of(action)
        bad = [c for c in calls if c.raw_arguments is not None and not c.arguments and c.raw_arguments.strip() not in ("", "{}")]
        err = f"arguments of call {bad[0].name!r} are not a JSON object" if bad else None
        parsed = ParsedAction(action.get("content") or "", [] if err else calls, err, json.dumps(action))
    elif isinstance(action, str):
        fn = PARSERS[parser] if isinstance(parser, str) else parser
        parsed = fn(action)
    else:
        return ParsedAction("", [], f"action must be text or an assistant message dict, got {type(action).__name__}")
    if tools is not None and parsed.error is None:
        names = {t["function"]["name"] for t in tools}
        for c in parsed.tool_calls:
            if c.name not in names:
                return dataclasses.replace(parsed, error=f"unknown tool {c.name!r}; available: {sorted(names)}")
    return parsed
