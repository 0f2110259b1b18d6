"""The `bash` tool every sandboxed domain offers: its schema, how its calls are read from an action,
and how a command's result is shown to the model.

`format_tool_output` is the one rendering of a command result, shared by the recorders
(pre-recorded trajectories) and the live envs, so that recorded and fresh tool messages compare equal.

Format (in this order, parts joined by newlines, empty parts dropped):

    <stdout>
    <stderr>
    [output truncated]          when the sandbox cut stdout/stderr at its output limit
    [exit code N]               when the command exited non-zero (and did not time out)
    [timed out after T s]       when it ran past its time limit

A command that printed nothing and succeeded shows `(no output)`, so the model always sees a
non-empty observation. Output longer than `max_chars` keeps its head and tail around a marker.
"""

from __future__ import annotations

from pivot_envs.parsing import ParsedAction
from pivot_envs.sandbox.base import ExecResult
from pivot_envs.trajectory import tool_calls_of

NO_OUTPUT = "(no output)"
TRUNCATED_MARKER = "[output truncated]"
DEFAULT_MAX_CHARS = 16_000

BASH_TOOL: dict = {
    "type": "function",
    "function": {
        "name": "bash",
        "description": ("Run one bash command in the task's sandbox and return its output. Each call "
                        "starts a fresh shell in the working directory: `cd` and variables do not "
                        "carry over to the next call, files do."),
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The bash command to run."}},
            "required": ["command"],
        },
    },
}


def _clip(text: str, max_chars: int) -> tuple[str, bool]:
    """Keep the first and last halves of `text` when it is longer than `max_chars`."""
    if len(text) <= max_chars:
        return text, False
    half = max_chars // 2
    return text[:half] + "\n...\n" + text[-half:], True


def format_tool_output(result: ExecResult, *, timeout_s: float | None = None,
                       max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """Render `result` as the content of the tool message that follows a `bash` call.

    Args:
        result: what `Sandbox.exec` returned.
        timeout_s: the limit the command ran under (shown in the timeout marker; falls back to
            the measured duration when unknown).
        max_chars: stdout+stderr longer than this are clipped (head and tail kept).
    """
    parts: list[str] = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append(result.stderr.rstrip("\n"))
    body, clipped = _clip("\n".join(p for p in parts if p), max_chars)
    lines = [body] if body else []
    if result.truncated or clipped:
        lines.append(TRUNCATED_MARKER)
    if result.timed_out:
        limit = timeout_s if timeout_s is not None else result.duration_s
        lines.append(f"[timed out after {limit:g} s]")
    elif result.exit_code != 0:
        lines.append(f"[exit code {result.exit_code}]")
    return "\n".join(lines) if lines else NO_OUTPUT


def bash_commands(action: ParsedAction | dict) -> tuple[list[str] | None, str]:
    """The commands of an action's bash calls, in order, or (None, why not). A plain message gives []."""
    calls = action.tool_calls if isinstance(action, ParsedAction) else tool_calls_of(action)
    cmds = []
    for c in calls:
        if c.name != "bash":
            return None, f"unknown tool {c.name!r} (the terminal has one tool, 'bash')"
        cmd = c.arguments.get("command")
        if not isinstance(cmd, str) or not cmd.strip():
            return None, "the bash call needs a non-empty string argument 'command'"
        extra = set(c.arguments) - {"command"}
        if extra:
            return None, f"unexpected bash argument(s) {sorted(extra)}"
        cmds.append(cmd)
    return cmds, ""
