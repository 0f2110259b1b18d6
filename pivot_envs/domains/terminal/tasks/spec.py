"""The task specification a family produces, and small helpers families use to write shell.

A `TaskSpec` carries everything needed to set a task up, solve it (the scripted expert) and check
it. `to_task_dict()` gives the `task` field of a terminal trajectory (pivot_envs/trajectory.py).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

DEFAULT_WORKDIR = "/app"
DEFAULT_TIMEOUT_S = 30.0

# Fixed identity and dates for git, so commit hashes and `git log` output are the same on every
# replay. Passed to every command (setup, expert, agent, test) as the task's `env`.
GIT_ENV: dict[str, str] = {
    "GIT_AUTHOR_NAME": "Pivot Agent", "GIT_AUTHOR_EMAIL": "agent@example.com",
    "GIT_COMMITTER_NAME": "Pivot Agent", "GIT_COMMITTER_EMAIL": "agent@example.com",
    "GIT_AUTHOR_DATE": "2024-01-15T12:00:00+00:00", "GIT_COMMITTER_DATE": "2024-01-15T12:00:00+00:00",
}


@dataclasses.dataclass(frozen=True)
class ExpertStep:
    """One expert turn: a short thought (assistant content) and one bash command."""

    thought: str
    command: str


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A generated terminal task. `id` is unique per (family, seed)."""

    id: str
    family: str
    seed: int
    instruction: str
    setup: str
    test: str
    expert: tuple[ExpertStep, ...]
    final_message: str
    split: str = ""
    workdir: str = DEFAULT_WORKDIR
    timeout_s: float = DEFAULT_TIMEOUT_S
    image: str | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_task_dict(self) -> dict[str, Any]:
        """The trajectory's `task` field."""
        task: dict[str, Any] = {
            "workdir": self.workdir, "setup": self.setup, "test": self.test,
            "timeout_s": self.timeout_s, "family": self.family, "seed": self.seed,
            "instruction": self.instruction,
        }
        if self.split:
            task["split"] = self.split
        if self.image:
            task["image"] = self.image
        if self.env:
            task["env"] = dict(self.env)
        return task

    def content_key(self) -> str:
        """What makes two tasks the same task (used to check that seeds give distinct tasks)."""
        return json.dumps([self.instruction, self.setup, self.test], sort_keys=True)


def q(text: str) -> str:
    """Shell-quote one word."""
    return shlex.quote(text)


def fill(template: str, **values: Any) -> str:
    """Replace `@name@` placeholders. Shell and awk code is full of braces, so `str.format` and
    f-strings would need every brace doubled; `@name@` keeps the templates readable."""
    out = template
    for key, value in values.items():
        out = out.replace(f"@{key}@", str(value))
    if "@" in out:
        import re
        leftover = re.findall(r"@[a-z_]+@", out)
        if leftover:
            raise KeyError(f"template placeholders without a value: {sorted(set(leftover))}")
    return out


class SetupScript:
    """Builds a deterministic bash setup script that creates the task's initial files."""

    def __init__(self) -> None:
        self.lines: list[str] = ["set -euo pipefail"]
        self._n = 0
        self._dirs: set[str] = set()

    def mkdir(self, *paths: str) -> SetupScript:
        self.lines.append("mkdir -p " + " ".join(q(p) for p in paths))
        return self

    def file(self, path: str, text: str, mode: int | None = None) -> SetupScript:
        """Create `path` with exactly `text` (parents created)."""
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent and parent not in self._dirs:
            self._dirs.add(parent)
            self.lines.append(f"mkdir -p {q(parent)}")
        self._n += 1
        delim = f"PIVOT_EOF_{self._n}"
        if text.endswith("\n") and delim not in text:
            self.lines.append(f"cat > {q(path)} <<'{delim}'\n{text}{delim}")
        else:
            self.lines.append(f"printf '%s' {q(text)} > {q(path)}")
        if mode is not None:
            self.lines.append(f"chmod {mode:o} {q(path)}")
        return self

    def run(self, command: str) -> SetupScript:
        self.lines.append(command)
        return self

    def script(self) -> str:
        return "\n".join(self.lines) + "\n"


def python_check(code: str, **data: Any) -> str:
    """A bash test script that runs `code` with python3; `data` values are available as Python
    variables (embedded as JSON). The check fails (exit 1) on any assertion error."""
    header = "".join(f"{k} = json.loads({json.dumps(v)!r})\n" for k, v in data.items())
    body = "import json, os, sys\n" + header + code.strip("\n") + "\n"
    if "PIVOT_PY" in body:
        raise ValueError("python check code must not contain the heredoc delimiter PIVOT_PY")
    return f"python3 - <<'PIVOT_PY'\n{body}PIVOT_PY\n"
