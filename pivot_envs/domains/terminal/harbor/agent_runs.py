"""Recorded agent runs (Harbor ATIF trajectories) on a Harbor / Terminal-Bench task -> terminal SFT data.

    pivotrl data convert --from atif RUN.json --task-dir TASK_FOLDER --out runs.jsonl [--backend docker|local]

The task folder gives the task (image, working directory, limits, the converted test script: the same
`task` a converted solution gets, see convert.py); the ATIF run gives the turns
(`pivot_envs.formats.atif.terminal_turns`: shell tool calls -> `bash` calls, observations -> tool
outputs, agent messages stay messages). The run's commands are then replayed in a fresh sandbox of
the task, one per turn, through the suite's recorder, and the task's test must pass at the end: a run
that does not solve the task there (a failed run, or one that relied on its persistent shell's `cd`
or variables, which the terminal domain's fresh shell per command does not keep) is refused with the
test's output. The tool outputs kept are the run's own observations (what the agent read); the
replay's outputs only check the run.

Backends. `docker` (default) builds the task's image as the task converter does. `local` has no
images: the Dockerfile is read as a recipe on the host's tools (`local_recipe`): `WORKDIR` and `ENV`
are kept, `COPY`/`ADD` of build-context files become the task's `files`, `RUN` lines its `setup`
script, `FROM` names nothing (the host's tools run), and anything the host cannot reproduce (a
multi-stage build, `COPY --from`, a URL, `USER`, `SHELL`, a file outside the persisted directories)
is refused with the line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from pivot_envs.domains.terminal.harbor.convert import (
    FINAL_MESSAGE,
    TaskRefusedError,
    build_image,
    offline_plan,
    to_task_dict,
)
from pivot_envs.domains.terminal.harbor.offline import TestsNeedNetworkError
from pivot_envs.domains.terminal.harbor.task import (
    HarborTask,
    HarborTaskError,
    load_task,
)
from pivot_envs.domains.terminal.tasks.format import BASH_TOOL, system_prompt
from pivot_envs.domains.terminal.tasks.recorder import record_commands
from pivot_envs.formats.atif import terminal_turns
from pivot_envs.formats.common import derive_id, read_records
from pivot_envs.sandbox import SandboxBackend, make_backend
from pivot_envs.trajectory import tool_calls_of, validate_record

# Dockerfile instructions that change nothing a command sees on the local backend.
_INERT = {"LABEL", "EXPOSE", "CMD", "ENTRYPOINT", "HEALTHCHECK", "STOPSIGNAL", "VOLUME", "MAINTAINER", "ARG",
          "ONBUILD"}
# What the local backend keeps between commands besides the working directory (pivot_envs/sandbox/local/sandbox.py).
_LOCAL_PERSISTED = ("/tmp", "/root")


class RunRefusedError(TaskRefusedError):
    """A recorded run that does not become a demonstration of its task (it fails the task's test when
    replayed there). `kind` is "run_fails"; the message holds the test output and the commands."""


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) of a Dockerfile: continuations joined, comments dropped."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, line in enumerate(text.splitlines(), start=1):
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not buf:
            start = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + "\n"
            continue
        out.append((start, buf + line))
        buf = ""
    if buf.strip():
        out.append((start, buf))
    return out


def local_recipe(task: HarborTask) -> dict[str, Any]:
    """The task's Dockerfile as the local backend can run it: {"workdir", "files", "setup", "env"}
    (see the module docstring). Raises HarborTaskError naming the Dockerfile line it cannot reproduce."""
    path = task.dockerfile_dir / "Dockerfile"
    text = task.generated_dockerfile if task.generated_dockerfile is not None else path.read_text(encoding="utf-8")
    workdir, files, env, setup = "/", {}, {}, []
    froms = 0

    def refuse(n: int, why: str) -> HarborTaskError:
        return HarborTaskError(f"{path}:{n}: {why}; the local backend runs the host's tools and cannot reproduce it "
                               "(use --backend docker)")

    for n, line in _logical_lines(text):
        op, _, rest = line.strip().partition(" ")
        op, rest = op.upper(), rest.strip()
        if op == "FROM":
            froms += 1
            if froms > 1:
                raise refuse(n, "a multi-stage build")
        elif op == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, rest))
        elif op == "ENV":
            words = shlex.split(rest)
            pairs = [w.split("=", 1) for w in words] if "=" in words[0] else [[words[0], " ".join(words[1:])]]
            env.update({k: v for k, v in pairs})
        elif op == "RUN":
            body = " ".join(json.loads(rest)) if rest.startswith("[") else rest
            setup.append(f"mkdir -p {shlex.quote(workdir)} && cd {shlex.quote(workdir)} && {{\n{body}\n}}")
        elif op in ("COPY", "ADD"):
            files.update(_copied(task, n, rest, workdir, refuse))
        elif op not in _INERT:
            raise refuse(n, f"{op} is not reproduced")
    kept = (task.workdir, *_LOCAL_PERSISTED)
    for target in files:
        if not any(target == r or target.startswith(r.rstrip("/") + "/") for r in kept):
            raise HarborTaskError(f"{path}: {target} is outside the working directory {task.workdir} and "
                                  f"{list(_LOCAL_PERSISTED)}, the only directories the local backend keeps between "
                                  "commands (use --backend docker)")
    return {"workdir": task.workdir, "files": files, "env": env,
            "setup": ("set -e\n" + "\n".join(setup)) if setup else ""}


def _copied(task: HarborTask, n: int, rest: str, workdir: str, refuse: Any) -> dict[str, str]:
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    flags = [w for w in words if w.startswith("--")]
    if any(not re.match(r"--(chown|chmod)=", w) for w in flags):
        raise refuse(n, f"COPY/ADD flags {flags}")
    words = [w for w in words if not w.startswith("--")]
    *sources, dest = words
    if any("://" in s for s in sources):
        raise refuse(n, "ADD of a URL")
    dest_abs = posixpath.normpath(posixpath.join(workdir, dest))
    as_dir = dest.endswith("/") or len(sources) > 1
    out: dict[str, str] = {}
    context = task.dockerfile_dir.resolve()
    for src in sources:
        matches = sorted(context.glob(src)) if any(c in src for c in "*?[") else [context / src]
        for m in matches:
            if not m.resolve().is_relative_to(context) or not m.exists():
                raise refuse(n, f"{src!r} is not a file of the build context")
            items = [m] if m.is_file() else sorted(p for p in m.rglob("*") if p.is_file())
            for p in items:
                rel = p.relative_to(m) if m.is_dir() else Path(p.name)
                if m.is_dir():
                    target = posixpath.join(dest_abs, str(rel))
                else:
                    target = posixpath.join(dest_abs, p.name) if as_dir or len(matches) > 1 else dest_abs
                try:
                    out[target] = p.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise refuse(n, f"{p.name} is not UTF-8 text (task files are stored as text)") from None
    return out


def task_for_backend(task: HarborTask, be: SandboxBackend, *, fallback_base: str | None = None) -> dict[str, Any]:
    """The terminal `task` of a Harbor task folder on backend `be` (docker: its image is built; local: its
    Dockerfile as a host recipe)."""
    try:
        plan = offline_plan(task)
    except TestsNeedNetworkError as e:
        raise TaskRefusedError(f"{task.path}: {e}", kind="needs_network") from None
    if be.capabilities.runs_images:
        image = build_image(task, fallback_base, plan=plan)
        return to_task_dict(task, image, plan, max_exec_timeout_s=be.max_exec_timeout_s)
    recipe = local_recipe(task)
    task_dict = to_task_dict(task, None, plan, max_exec_timeout_s=be.max_exec_timeout_s)
    task_dict.pop("image")
    task_dict.update(workdir=recipe["workdir"], setup=recipe["setup"])
    if recipe["files"]:
        task_dict["files"] = recipe["files"]
    if recipe["env"]:
        task_dict["env"] = {**recipe["env"], **task_dict.get("env", {})}
    return task_dict


def convert_agent_runs(runs: str | os.PathLike, task_dir: str | os.PathLike, backend: SandboxBackend | str = "docker",
                       *, fallback_base: str | None = None, check_initial: bool = True) -> list[dict[str, Any]]:
    """Every ATIF run in the file `runs` (one pretty-printed trajectory, or one per line), paired with the
    task folder `task_dir`, as a checked terminal trajectory dict (see the module docstring).

    Raises `AtifStepError` (a step that does not map: file, line, step, field, why), `TrajectoryError`
    (a malformed run), `HarborTaskError` (a malformed task folder), `TaskRefusedError` (a task that
    cannot be converted: the tests pass initially, need the network, the image does not build) and
    `RunRefusedError` (a run that does not pass the task's test when replayed)."""
    task = load_task(Path(task_dir))
    be = make_backend(backend) if isinstance(backend, str) else backend
    task_dict = task_for_backend(task, be, fallback_base=fallback_base)
    parsed = []
    for rec, where in read_records(runs):
        turns, meta = terminal_turns(rec, where, closing_message=FINAL_MESSAGE)
        traj_id = "atif-" + derive_id(rec, where, ("session_id", "id"))
        messages = [{"role": "system", "content": system_prompt(task_dict["workdir"])},
                    {"role": "user", "content": task.instruction}, *turns]
        parsed.append((where, traj_id, messages, meta))
    out = []
    for where, traj_id, messages, meta in parsed:
        actions = [m for m in messages if m["role"] == "assistant"]
        turn_of = [k for k, m in enumerate(actions) for _ in tool_calls_of(m)]
        commands = [c.arguments["command"] for m in actions for c in tool_calls_of(m)]
        limits = dataclasses.replace(task.limits, timeout_s=task_dict["timeout_s"])
        recording = record_commands(be, task_dict.get("image"), workdir=task_dict["workdir"], limits=limits,
                                    commands=commands, test=task_dict["test"], setup=task_dict.get("setup", ""),
                                    env=task_dict.get("env"), task_id=traj_id,
                                    test_timeout_s=task_dict["test_timeout_s"], check_initial=check_initial,
                                    files=task_dict.get("files"))
        if recording.initial_test is not None and recording.initial_test.ok:
            raise TaskRefusedError(f"{task.path}: the tests already pass before any command of the run; the "
                                   "task would hand a free reward to an agent that does nothing",
                                   kind="passes_initially")
        if not recording.final_test.ok:
            raise RunRefusedError(
                f"{where.source}, line {where.line}: the run does not solve {task.name} when its commands are "
                f"replayed in the task's sandbox (each in a fresh shell in {task_dict['workdir']}; a run that "
                f"relied on its shell's `cd` or variables needs them in each command).\n"
                f"{recording.failure_report(commands)}", kind="run_fails")
        record_task = {**task_dict, "recorded_with": {"backend": be.name, "image": task_dict.get("image") or "host"},
                       "background_processes": recording.background_processes(turn_of),
                       "source": {**task_dict["source"], "agent_run": {"file": str(where.source), "line": where.line,
                                                                        **meta}}}
        traj = {"id": traj_id, "domain": "terminal", "task": record_task, "tools": [BASH_TOOL], "messages": messages}
        validate_record(json.loads(json.dumps(traj)), line=where.line, source=where.source)
        out.append(traj)
    return out


__all__ = ["RunRefusedError", "convert_agent_runs", "local_recipe", "task_for_backend"]
