"""The SWE domain's two tools: `bash` (the core's) and `str_replace_editor` (editor_script.py,
executed inside the sandbox so that its edits and undo history are part of the sandbox state and
therefore of every snapshot).

`run_call(box, call)` runs one tool call and returns the tool message content; the recorder, the
replay of a reset, the episode loop and the verifier all go through it, so recorded and fresh
outputs compare equal. Editor arguments travel base64-encoded as JSON, so no quoting of code can
break the command line.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from importlib import resources

from pivot_envs.bash_tool import BASH_TOOL, format_tool_output
from pivot_envs.sandbox.base import ExecResult, Sandbox
from pivot_envs.trajectory import ToolCall

EDITOR_PATH = "/usr/local/lib/pivotrl/str_replace_editor.py"
EDITOR_COMMANDS = ("view", "create", "str_replace", "insert", "undo_edit")
EDITING_COMMANDS = frozenset(EDITOR_COMMANDS) - {"view"}

EDITOR_TOOL: dict = {
    "type": "function",
    "function": {
        "name": "str_replace_editor",
        "description": (
            "View, create and edit files. `view` shows a file with line numbers (`view_range` [start, end], "
            "end -1 = to the end) or lists a directory two levels deep; `create` writes a new file and refuses "
            "an existing one; `str_replace` replaces `old_str`, which must occur exactly once in the file, by "
            "`new_str`; `insert` inserts `new_str` after line `insert_line` (0 = top); `undo_edit` reverts the "
            "last edit of the file. Paths are absolute (the repository is /testbed)."),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": list(EDITOR_COMMANDS)},
                "path": {"type": "string", "description": "Absolute path of a file or directory."},
                "view_range": {"type": "array", "items": {"type": "integer"}},
                "file_text": {"type": "string"},
                "old_str": {"type": "string"},
                "new_str": {"type": "string"},
                "insert_line": {"type": "integer"},
            },
            "required": ["command", "path"],
        },
    },
}

_ALLOWED_ARGS = frozenset(EDITOR_TOOL["function"]["parameters"]["properties"])


def editor_script() -> str:
    """The source of the in-sandbox editor."""
    return resources.files("pivot_envs.domains.swe").joinpath("editor_script.py").read_text(encoding="utf-8")


def check_editor_arguments(arguments: dict) -> str | None:
    """Why an editor call is malformed (unknown argument, missing command/path), or None. Semantic
    errors (old_str not unique, file exists...) are the editor's own output, as for a real tool."""
    extra = sorted(set(arguments) - _ALLOWED_ARGS)
    if extra:
        return f"unexpected str_replace_editor argument(s) {extra}"
    if arguments.get("command") not in EDITOR_COMMANDS:
        return f"str_replace_editor needs 'command', one of {list(EDITOR_COMMANDS)}"
    if not isinstance(arguments.get("path"), str):
        return "str_replace_editor needs a string 'path'"
    return None


def editor_command(arguments: dict) -> str:
    """The shell command that runs one editor call inside the sandbox."""
    blob = base64.b64encode(json.dumps(arguments, ensure_ascii=False).encode()).decode()
    return f"python3 {EDITOR_PATH} {blob}"


TOOLS: list[dict] = [BASH_TOOL, EDITOR_TOOL]
TOOL_NAMES = frozenset(t["function"]["name"] for t in TOOLS)


def install_editor_command() -> str:
    """A shell command that writes the editor into the sandbox (part of every task's preparation)."""
    blob = base64.b64encode(editor_script().encode()).decode()
    return f"mkdir -p {EDITOR_PATH.rsplit('/', 1)[0]} && echo {blob} | base64 -d > {EDITOR_PATH}"


def check_call(call: ToolCall) -> str | None:
    """Why a tool call cannot run (unknown tool, bad arguments), or None."""
    if call.name not in TOOL_NAMES:
        return f"unknown tool {call.name!r}; the tools are {sorted(TOOL_NAMES)}"
    if call.raw_arguments is not None and not call.arguments and call.raw_arguments.strip() not in ("", "{}"):
        return f"the arguments of {call.name!r} are not a JSON object"
    if call.name == "bash":
        cmd = call.arguments.get("command")
        if not isinstance(cmd, str) or not cmd.strip():
            return "the bash call needs a non-empty string argument 'command'"
        extra = set(call.arguments) - {"command"}
        return f"unexpected bash argument(s) {sorted(extra)}" if extra else None
    return check_editor_arguments(call.arguments)


@dataclasses.dataclass(frozen=True)
class CallResult:
    content: str          # the tool message the model sees
    result: ExecResult    # what the sandbox returned


Exec = Callable[[Sandbox, str], ExecResult]


def run_call(box: Sandbox, call: ToolCall, exec_fn: Exec, timeout_s: float) -> CallResult:
    """Run one (checked) tool call in `box` through `exec_fn(box, command)`."""
    if call.name == "bash":
        res = exec_fn(box, call.arguments["command"])
        return CallResult(format_tool_output(res, timeout_s=timeout_s), res)
    res = exec_fn(box, editor_command(call.arguments))
    if res.timed_out or res.exit_code not in (0, 1):  # 1 = the editor refused (its message is the output)
        return CallResult(format_tool_output(res, timeout_s=timeout_s), res)
    return CallResult(res.stdout.rstrip("\n") or "(no output)", res)
