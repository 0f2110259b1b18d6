"""The trajectory format every part of pivotrl speaks (the README's "Using the envs" links here).

One JSON object per line:

    {"id": str, "domain": "terminal" | "tooluse" | "swe" | a registered domain (`DOMAINS`),
     "task": {...domain-specific...},
     "tools": [OpenAI function-tool schemas],
     "messages": [OpenAI chat messages]}

Turn k (0-based) is the k-th assistant message. `prefix(k)` is the conversation the policy sees
before producing turn k; `actions_before(k)` are the demonstration's assistant messages 0..k-1,
which a reset replays to rebuild the environment state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from pivot_envs.errors import TrajectoryError, TurnOutOfRangeError

ROLES = ("system", "user", "assistant", "tool")


@dataclasses.dataclass
class ToolCall:
    """One function call of an assistant message. `arguments` is already decoded from JSON
    when it was valid JSON; `raw_arguments` keeps the original string."""

    name: str
    arguments: dict[str, Any]
    id: str = ""
    raw_arguments: str | None = None

    def to_openai(self) -> dict:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


@dataclasses.dataclass
class Trajectory:
    id: str
    domain: str
    task: dict[str, Any]
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]

    # ----- turns -----
    @property
    def assistant_indices(self) -> list[int]:
        """Positions in `messages` of the assistant messages, in order (turn k -> index)."""
        return [i for i, m in enumerate(self.messages) if m["role"] == "assistant"]

    @property
    def num_turns(self) -> int:
        return len(self.assistant_indices)

    def check_turn(self, k: int) -> int:
        n = self.num_turns
        if not isinstance(k, (int,)) or isinstance(k, bool) or k < 0 or k >= n:
            raise TurnOutOfRangeError(
                f"trajectory {self.id!r} has {n} assistant turns (valid turns: 0..{n - 1}); got turn={k!r}")
        return k

    def prefix(self, k: int) -> list[dict[str, Any]]:
        """The conversation before the k-th assistant message (what the policy sees at turn k)."""
        self.check_turn(k)
        return [dict(m) for m in self.messages[: self.assistant_indices[k]]]

    def reference(self, k: int) -> dict[str, Any]:
        """The demonstration's assistant message at turn k."""
        self.check_turn(k)
        return dict(self.messages[self.assistant_indices[k]])

    def actions_before(self, k: int) -> list[dict[str, Any]]:
        """The demonstration's assistant messages 0..k-1 (replayed to rebuild the state at turn k)."""
        if k == self.num_turns:  # the final state, after every action
            return [dict(self.messages[i]) for i in self.assistant_indices]
        self.check_turn(k)
        return [dict(self.messages[i]) for i in self.assistant_indices[:k]]

    def tool_outputs_after(self, k: int) -> list[dict[str, Any]]:
        """The tool messages recorded right after assistant turn k (may be empty)."""
        self.check_turn(k)
        out = []
        for m in self.messages[self.assistant_indices[k] + 1:]:
            if m["role"] != "tool":
                break
            out.append(m)
        return out

    # ----- identity -----
    def task_key(self) -> str:
        """A stable hash of the task spec and tools (part of every snapshot cache key)."""
        blob = json.dumps({"domain": self.domain, "task": self.task, "tools": self.tools}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "domain": self.domain, "task": self.task, "tools": self.tools,
                "messages": self.messages}


def tool_calls_of(message: dict[str, Any]) -> list[ToolCall]:
    """Decode the `tool_calls` of an assistant message. Arguments that are not valid JSON are kept
    in `raw_arguments` with `arguments == {}` (the verifier turns that into a verdict)."""
    calls = []
    for tc in message.get("tool_calls") or []:
        fn = tc.get("function", tc)
        raw = fn.get("arguments", {})
        if isinstance(raw, str):
            try:
                args = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError:
                calls.append(ToolCall(fn.get("name", ""), {}, tc.get("id", ""), raw))
                continue
            if not isinstance(args, dict):
                calls.append(ToolCall(fn.get("name", ""), {}, tc.get("id", ""), raw))
                continue
        else:
            args = raw
        calls.append(ToolCall(fn.get("name", ""), args, tc.get("id", ""), raw if isinstance(raw, str) else None))
    return calls


def action_hash(actions: Iterable[dict[str, Any]]) -> str:
    """Hash of a sequence of assistant actions, by their effect-relevant parts only
    (content and tool calls; ids dropped), for snapshot cache keys."""
    h = hashlib.sha256()
    for a in actions:
        calls = [(c.name, json.dumps(c.arguments, sort_keys=True), c.raw_arguments if not c.arguments else None)
                 for c in tool_calls_of(a)]
        h.update(json.dumps({"content": a.get("content") or "", "calls": calls}, sort_keys=True).encode())
        h.update(b"\x00")
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- validation

def _fail(msg: str, line: int | None, field: str, source: str | None) -> NoReturn:
    raise TrajectoryError(msg, line=line, field=field, source=source)


# A record in another format fails the first required-field check: say which importer reads it.
_FORMAT_KEYS = (("responses_create_params", "nemo_gym"), ("conversations", "sharegpt"), ("steps", "atif"),
                ("messages", "chat"))


def _format_hint(rec: dict[str, Any]) -> str:
    fmt = next((f for key, f in _FORMAT_KEYS if key in rec), None)
    return (f" (this looks like {fmt} data: convert it first, `pivotrl data convert --from {fmt} IN --out OUT`)"
            if fmt else "")


def unknown_domain(domain: Any) -> str | None:
    """None when `domain` is a registered env's label (pivot_envs/registration.py), else what is wrong."""
    from pivot_envs.registration import domains

    known = domains()
    return None if domain in known else f"unknown domain {domain!r}; use one of {known}"


def __getattr__(name: str) -> Any:
    # DOMAINS is derived from the registered env specs (a domain registered out of the tree included),
    # so it is computed when read, not fixed at import.
    if name == "DOMAINS":
        from pivot_envs.registration import domains

        return domains()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_json_object(arguments: str | dict) -> bool:
    if isinstance(arguments, dict):
        return True
    if not arguments.strip():
        return True  # no arguments
    try:
        return isinstance(json.loads(arguments), dict)
    except json.JSONDecodeError:
        return False


def validate_record(rec: Any, *, line: int | None = None, source: str | None = None) -> Trajectory:
    """Check one raw record and return a Trajectory. Errors name the line and the field."""
    if not isinstance(rec, dict):
        _fail(f"expected a JSON object, got {type(rec).__name__}", line, "<record>", source)
    for key, typ in (("id", str), ("domain", str), ("task", dict), ("messages", list)):
        if key not in rec:
            _fail("missing required field; a trajectory needs id, domain, task, tools, messages" + _format_hint(rec),
                  line, key, source)
        if not isinstance(rec[key], typ):
            _fail(f"must be a {typ.__name__}, got {type(rec[key]).__name__}", line, key, source)
    bad_domain = unknown_domain(rec["domain"])
    if bad_domain:
        _fail(bad_domain, line, "domain", source)
    tools = rec.get("tools", [])
    if not isinstance(tools, list):
        _fail(f"must be a list of OpenAI function-tool schemas, got {type(tools).__name__}", line, "tools", source)
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            _fail("must look like {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}",
                  line, f"tools[{i}]", source)
    msgs = rec["messages"]
    tool_names = sorted(t["function"]["name"] for t in tools)
    n_assistant = 0
    for i, m in enumerate(msgs):
        f = f"messages[{i}]"
        if not isinstance(m, dict):
            _fail("must be an object with 'role'", line, f, source)
        role = m.get("role")
        if role not in ROLES:
            _fail(f"unknown role {role!r}; use one of {ROLES}", line, f + ".role", source)
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            _fail(f"content must be a string or null, got {type(content).__name__}", line, f + ".content", source)
        if role == "assistant":
            n_assistant += 1
            tcs = m.get("tool_calls") or []
            if not isinstance(tcs, list):
                _fail("tool_calls must be a list", line, f + ".tool_calls", source)
            if not tcs and not content:
                _fail("an assistant message needs content or tool_calls", line, f, source)
            for j, tc in enumerate(tcs):
                fn = tc.get("function") if isinstance(tc, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    _fail("must be {'type': 'function', 'function': {'name': str, 'arguments': str|dict}}",
                          line, f"{f}.tool_calls[{j}]", source)
                if not isinstance(fn.get("arguments", {}), (str, dict)):
                    _fail("arguments must be a JSON string or an object", line,
                          f"{f}.tool_calls[{j}].function.arguments", source)
                where = f"trajectory {rec['id']!r} turn {n_assistant - 1}"
                if fn["name"] not in tool_names:
                    _fail(f"{where} calls {fn['name']!r}, which is not in its tools {tool_names}: add the tool's "
                          "schema to 'tools' or fix the name", line, f"{f}.tool_calls[{j}].function.name", source)
                if not _is_json_object(fn.get("arguments", {})):
                    _fail(f"{where}: the arguments of {fn['name']!r} are not a JSON object (the demonstration "
                          "could never match itself)", line, f"{f}.tool_calls[{j}].function.arguments", source)
        elif role == "tool" and not isinstance(content, str):
            _fail("a tool message needs string content", line, f + ".content", source)
    if n_assistant == 0:
        _fail("the conversation has no assistant message, so it has no turns", line, "messages", source)
    return Trajectory(id=rec["id"], domain=rec["domain"], task=rec["task"], tools=list(tools),
                      messages=[dict(m) for m in msgs])


def iter_jsonl(path: str | os.PathLike) -> Iterator[Trajectory]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trajectory file {str(path)!r} does not exist")
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as e:
                raise TrajectoryError(f"not valid JSON ({e.msg} at column {e.colno})", line=lineno,
                                      field="<json>", source=str(path)) from None
            yield validate_record(rec, line=lineno, source=str(path))


def load_trajectories(source: Any) -> list[Trajectory]:
    """Load trajectories from a JSONL path, a list of dicts/Trajectory, or a HF `datasets.Dataset`."""
    if source is None:
        return []
    if isinstance(source, (str, os.PathLike)):
        out = list(iter_jsonl(source))
        if not out:
            raise TrajectoryError("the file holds no trajectory (it is empty): expected one JSON object per line",
                                  source=str(source))
        where = str(source)
    elif isinstance(source, Trajectory):
        return [source]
    else:
        out = [rec if isinstance(rec, Trajectory) else validate_record(dict(rec), line=i + 1, source="<records>")
               for i, rec in enumerate(source)]
        where = None
    ids = [t.id for t in out]
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})[:5]
        raise TrajectoryError(f"duplicate trajectory ids {dup}; ids must be unique", field="id", source=where)
    return out


def save_jsonl(trajectories: Iterable[Trajectory | dict], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for t in trajectories:
            d = t.to_dict() if isinstance(t, Trajectory) else t
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
