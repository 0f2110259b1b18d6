"""OpenAI / Hugging Face chat JSONL -> pivotrl trajectories.

The shape most SFT sets use: one object per line with `messages` (OpenAI chat messages) and,
optionally, `tools` (OpenAI function-tool schemas, nested or flat, or a JSON string of them).
What the importer accepts, beyond the strict OpenAI form:

- tools in the `tools` field or, Hermes style, as a `<tools>` block in the system prompt;
- tool calls as structured `tool_calls` (nested, or flat `{"name", "arguments"}`; arguments as a JSON
  string or an object), as the legacy `function_call` of an assistant message, or as Hermes text in
  the content (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, the Qwen / Hermes /
  NousResearch form);
- tool outputs as `tool` messages, legacy `function` messages, or a user message made only of
  `<tool_response>` blocks (Hermes);
- `developer` messages (OpenAI's newer name for system) as system messages; content as a string or
  a list of text parts.

Missing ids become `<file stem>-<line>`; missing tool-call ids `call_<turn>_<j>`; a missing domain is
`tooluse` (a chat record has no sandbox task). `id`, `domain` and `task` are taken as they are when
present; every other top-level field is kept in `task["meta"]` so that nothing is lost.
"""

from __future__ import annotations

from typing import Any

from pivot_envs.formats.common import (
    Where,
    call_from_object,
    chat_like_trajectory,
    hermes_responses,
    link_tool_names,
    split_hermes,
    text_of,
)

NAME = "chat"
ROLE_ALIASES = {"developer": "system", "function": "tool", "ipython": "tool"}


def _assistant(m: dict[str, Any], where: Where, field: str, turn: int) -> dict[str, Any]:
    content = text_of(m.get("content"), where, f"{field}.content")
    calls: list[dict[str, Any]] = []
    raw_calls = m.get("tool_calls")
    if raw_calls:
        if not isinstance(raw_calls, list):
            where.fail("tool_calls must be a list", f"{field}.tool_calls")
        for j, tc in enumerate(raw_calls):
            f = f"{field}.tool_calls[{j}]"
            fn = tc.get("function", tc) if isinstance(tc, dict) else None  # nested, or flat {"name", "arguments"}
            if not isinstance(fn, dict):
                where.fail("must be {'type': 'function', 'function': {'name': str, 'arguments': str|object}}", f)
            calls.append(call_from_object(fn, where, f + ".function", str(tc.get("id") or f"call_{turn}_{j}")))
    elif isinstance(m.get("function_call"), dict):  # the legacy single-call form
        calls.append(call_from_object(m["function_call"], where, f"{field}.function_call", f"call_{turn}_0"))
    else:
        content, calls = split_hermes(content, where, f"{field}.content", f"call_{turn}")
    out = {k: v for k, v in m.items() if k not in ("content", "tool_calls", "function_call")}
    out.update(role="assistant", content=content)
    if calls:
        out["tool_calls"] = calls
    return out


def convert_messages(raw: Any, where: Where, field: str = "messages") -> list[dict[str, Any]]:
    """Chat messages in any accepted spelling -> the project's messages (roles system/user/assistant/tool)."""
    if not isinstance(raw, list) or not raw:
        where.fail("must be a non-empty list of chat messages", field)
    out: list[dict[str, Any]] = []
    turn = 0
    for i, m in enumerate(raw):
        f = f"{field}[{i}]"
        if not isinstance(m, dict):
            where.fail(f"a message must be an object, got {type(m).__name__}", f)
        role = ROLE_ALIASES.get(str(m.get("role")), m.get("role"))
        if role == "assistant":
            out.append(_assistant(m, where, f, turn))
            turn += 1
            continue
        if role not in ("system", "user", "tool"):
            where.fail(f"unknown role {m.get('role')!r}; use system, developer, user, assistant, tool or function", f + ".role")
        content = text_of(m.get("content"), where, f + ".content")
        responses = hermes_responses(content) if role == "user" else None
        if responses is not None:
            out.extend({"role": "tool", "content": body} for body in responses)
            continue
        msg = {k: v for k, v in m.items() if k != "content"}
        msg.update(role=role, content=content)
        out.append(msg)
    link_tool_names(out)
    return out


def to_trajectory(rec: Any, where: Where) -> dict[str, Any]:
    """One chat record -> one trajectory dict (validated: errors name the file, line and field)."""
    return chat_like_trajectory(rec, where, "messages", (), lambda r: convert_messages(r["messages"], where))

