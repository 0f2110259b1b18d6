"""Synthetic multi-turn tool-calling conversations, deterministic for a seed.

Used by the chat-template property tests (every shape a trajectory can take: tools or none, system
prompt or none, several tool calls per turn, string or dict arguments, empty and multi-line tool
output, plain assistant messages, awkward whitespace and non-ASCII text) and by the train-step
benchmark (a realistic terminal-task conversation of a chosen length).
"""

from __future__ import annotations

import json
import random
from typing import Any

BASH_TOOL = {"type": "function", "function": {
    "name": "bash", "description": "Run a shell command in the task's sandbox and return its output.",
    "parameters": {"type": "object", "properties": {"command": {"type": "string", "description": "The command."}},
                   "required": ["command"]}}}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search_flights", "description": "Search flights between two airports on a date.",
    "parameters": {"type": "object", "properties": {"origin": {"type": "string"}, "destination": {"type": "string"},
                                                    "date": {"type": "string"}, "max_stops": {"type": "integer"}},
                   "required": ["origin", "destination", "date"]}}}

_USER_LINES = [
    "Please list the files in /app and tell me which one is largest.",
    "Count the lines of every .py file under src/ and write the total to out.txt.",
    "What's the weather in Zürich today? Use celsius.",
    "Find flights from SFO to JFK on 2024-05-01 with at most one stop.",
    "  Leading spaces and a trailing newline\n",
    "Résumé: naïve café — 東京 and emoji 🚀 are fine too.",
    "42 is the answer; now fix the failing test in tests/test_app.py.",
]
_ASSISTANT_LINES = [
    "Let me look at the directory first.",
    "Done. The largest file is data.csv (12 KB).",
    "\n  I will check the tests.  \n",
    "The total is 1,337 lines.",
    "",
    "1. First I'll run the tests\n2. Then fix the bug",
    "Voilà — c'est fait.",
]
_COMMANDS = ["ls -la /app", "wc -l src/*.py | tail -n 1 > out.txt", "cat tests/test_app.py",
             "grep -rn \"TODO\" src/ | head -n 5", "python3 -m pytest -q", "du -sh * | sort -h", "echo 'héllo' > a.txt"]
_OUTPUTS = ["", "total 8\n-rw-r--r-- 1 root root 12288 data.csv\n-rw-r--r-- 1 root root 42 notes.txt",
            "1337", "{\"temp\": 21, \"unit\": \"c\"}", "  indented output\n\n", ("Traceback (most recent call last):\n  "
            "File \"app.py\", line 3\nNameError: name 'x' is not defined"), "[]"]


def _call(rng: random.Random, tools: list[dict], idx: int) -> dict:
    name = rng.choice(tools)["function"]["name"] if tools else "bash"
    if name == "bash":
        args: dict[str, Any] = {"command": rng.choice(_COMMANDS)}
    elif name == "get_weather":
        args = {"city": rng.choice(["Zürich", "Paris", "東京"]), "unit": rng.choice(["c", "f"])}
    else:
        args = {"origin": "SFO", "destination": "JFK", "date": "2024-05-01", "max_stops": rng.randint(0, 2)}
    encoded: Any = json.dumps(args, ensure_ascii=False) if rng.random() < 0.5 else args  # OpenAI string or dict
    return {"id": f"call_{idx}", "type": "function", "function": {"name": name, "arguments": encoded}}


def random_conversation(seed: int, max_turns: int = 5) -> tuple[list[dict], list[dict]]:
    """(messages, tools): a conversation ending with an assistant message, >= 1 assistant turn."""
    rng = random.Random(seed)
    tools = rng.choice([[], [BASH_TOOL], [BASH_TOOL, WEATHER_TOOL, SEARCH_TOOL], [WEATHER_TOOL]])
    messages: list[dict] = []
    if rng.random() < 0.6:
        messages.append({"role": "system", "content": rng.choice(["You are a careful agent.", "Be brief.", ""])})
    messages.append({"role": "user", "content": rng.choice(_USER_LINES)})
    n_turns = rng.randint(1, max_turns)
    call_idx = 0
    for turn in range(n_turns):
        last = turn == n_turns - 1
        if tools and not last and rng.random() < 0.8:
            calls = []
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                calls.append(_call(rng, tools, call_idx))
                call_idx += 1
            content = rng.choice(["", "", "Checking.", "  I'll run it.\n"])
            messages.append({"role": "assistant", "content": content or None, "tool_calls": calls})
            for c in calls:
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": rng.choice(_OUTPUTS)})
        else:
            messages.append({"role": "assistant", "content": rng.choice(_ASSISTANT_LINES)})
            if not last:
                messages.append({"role": "user", "content": rng.choice(_USER_LINES)})
    return messages, tools


def terminal_conversation(target_chars: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """A realistic terminal-agent conversation (bash tool calls and their output) of about
    `target_chars` characters before its last turn; ends with a user-visible tool output, ready for
    the next assistant turn. Used to build a ~1k-token prefix for the train-step benchmark."""
    rng = random.Random(seed)
    messages: list[dict] = [
        {"role": "system", "content": "You are an expert Linux engineer working inside a sandbox at /app. "
                                      "Solve the task with shell commands, one tool call per turn."},
        {"role": "user", "content": "The service in /app fails its tests. Find the bug, fix it, and make "
                                    "`python3 -m pytest -q` pass. Do not change the tests."},
    ]
    size = sum(len(m["content"]) for m in messages)
    step = 0
    while size < target_chars:
        cmd = rng.choice(_COMMANDS)
        note = rng.choice(["", "Let me check that.", "Next I'll look at the failing module."])
        messages.append({"role": "assistant", "content": note or None, "tool_calls": [
            {"id": f"call_{step}", "type": "function", "function": {"name": "bash", "arguments": {"command": cmd}}}]})
        out = "\n".join(f"{rng.choice(['-rw-r--r--', 'drwxr-xr-x'])} 1 root root {rng.randint(10, 99999):>6} "
                        f"{rng.choice(['app.py', 'util.py', 'config.yaml', 'README.md', 'tests/test_app.py'])}"
                        for _ in range(rng.randint(2, 8)))
        messages.append({"role": "tool", "tool_call_id": f"call_{step}", "content": out})
        size += len(cmd) + len(note) + len(out) + 40
        step += 1
    return messages, [BASH_TOOL]
