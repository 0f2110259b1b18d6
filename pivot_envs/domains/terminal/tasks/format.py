"""The terminal domain's prompt text. The `bash` tool itself (its schema and `format_tool_output`,
the one rendering of a command result shared by recorders and the live env) lives in
`pivot_envs.bash_tool`; it is re-exported here for the recorders.
"""

from __future__ import annotations

from pivot_envs.bash_tool import (
    BASH_TOOL,
    DEFAULT_MAX_CHARS,
    NO_OUTPUT,
    TRUNCATED_MARKER,
    format_tool_output,
)

__all__ = ["BASH_TOOL", "DEFAULT_MAX_CHARS", "NO_OUTPUT", "TRUNCATED_MARKER", "format_tool_output", "system_prompt"]


def system_prompt(workdir: str = "/app") -> str:
    """The system message of every terminal trajectory (generated or converted)."""
    return (f"You are an expert Linux user working in a sandboxed terminal. Your working directory is "
            f"{workdir}. Use the `bash` tool to run one command per turn; every command starts in "
            f"{workdir} in a fresh shell, so `cd` and shell variables do not persist between calls. "
            f"Inspect before you change things and check your result. When the task is complete, "
            f"reply with a short summary and no tool call.")
