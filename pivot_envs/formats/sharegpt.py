"""ShareGPT -> pivotrl trajectories.

ShareGPT records hold `conversations`: a list of `{"from": speaker, "value": text}` turns, with an
optional top-level `system` prompt and, for tool use, `tools` (usually a JSON *string* of a list of
flat function specs, as LLaMA-Factory writes it). Speakers:

| `from` | becomes |
|---|---|
| `system` | a system message |
| `human`, `user` | a user message |
| `gpt`, `assistant`, `model`, `chatgpt`, `bing`, `bard` | an assistant message; Hermes `<tool_call>` text in it becomes tool calls |
| `function_call` | an assistant message whose value is one call `{"name", "arguments"}` or a JSON list of them (parallel calls) |
| `observation`, `tool`, `function`, `ipython` | tool output(s): one tool message, or one per call when the value is a JSON list as long as the calls before it |

Files may be JSON Lines or one JSON array. Ids and domains are derived as for chat JSONL (see
`chat.py`); unknown top-level fields go to `task["meta"]`.
"""

from __future__ import annotations

import json
from typing import Any

from pivot_envs.formats.common import (
    Where,
    call_from_object,
    chat_like_trajectory,
    link_tool_names,
    split_hermes,
)

NAME = "sharegpt"
SPEAKERS = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
            "model": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
            "function_call": "function_call", "observation": "tool", "tool": "tool", "function": "tool",
            "ipython": "tool"}


def _calls(value: str, where: Where, field: str, turn: int) -> list[dict[str, Any]]:
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as e:
        where.fail(f"a function_call value must be JSON {{'name': ..., 'arguments': {{...}}}} ({e.msg})", field)
    objs = obj if isinstance(obj, list) else [obj]
    if not objs:
        where.fail("a function_call value must hold at least one call", field)
    return [call_from_object(o, where, field, f"call_{turn}_{j}") for j, o in enumerate(objs)]


def _observations(value: str, n_calls: int) -> list[str]:
    """One output per call of the turn: a JSON list as long as the calls is split, else one output."""
    if n_calls > 1:
        try:
            parts = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        if isinstance(parts, list) and len(parts) == n_calls:
            return [p if isinstance(p, str) else json.dumps(p, ensure_ascii=False) for p in parts]
    return [value]


def convert_conversations(raw: Any, where: Where, system: str | None = None) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        where.fail("must be a non-empty list of {'from': ..., 'value': ...} turns", "conversations")
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    turn, last_calls = 0, 0
    for i, t in enumerate(raw):
        f = f"conversations[{i}]"
        if not isinstance(t, dict):
            where.fail(f"a turn must be an object, got {type(t).__name__}", f)
        speaker = SPEAKERS.get(str(t.get("from", "")).lower())
        if speaker is None:
            where.fail(f"unknown speaker {t.get('from')!r}; use one of {sorted(SPEAKERS)}", f + ".from")
        value = t.get("value")
        if not isinstance(value, str):
            where.fail(f"must be a string, got {type(value).__name__}", f + ".value")
        if speaker == "function_call":
            calls = _calls(value, where, f + ".value", turn)
            out.append({"role": "assistant", "content": "", "tool_calls": calls})
            turn, last_calls = turn + 1, len(calls)
        elif speaker == "assistant":
            content, calls = split_hermes(value, where, f + ".value", f"call_{turn}")
            out.append({"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})})
            turn, last_calls = turn + 1, len(calls)
        elif speaker == "tool":
            out.extend({"role": "tool", "content": o} for o in _observations(value, last_calls))
        else:
            out.append({"role": speaker, "content": value})
    link_tool_names(out)
    return out


def to_trajectory(rec: Any, where: Where) -> dict[str, Any]:
    """One ShareGPT record -> one trajectory dict (validated: errors name the file, line and field)."""
    def messages(rec: dict[str, Any]) -> list[dict[str, Any]]:
        system = rec.get("system")
        if system is not None and not isinstance(system, str):
            where.fail(f"must be a string, got {type(system).__name__}", "system")
        return convert_conversations(rec["conversations"], where, system)

    return chat_like_trajectory(rec, where, "conversations", ("system",), messages)
