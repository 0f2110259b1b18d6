"""Record expert trajectories by running tasks in a real sandbox.

`record_trajectory(task, backend)` runs the task's setup, then each expert command, one per
assistant turn, and stores the real outputs as tool messages (formatted by `format_tool_output`,
the same function the live env uses). It then runs the task's test and raises `ExpertFailedError`
if the expert did not solve the task. `check_task` also proves that the test FAILS on the initial
state, so a test that any state passes is caught.

The pre-recorded suite (`data/*.jsonl`, made by `python -m pivot_envs.domains.terminal.tasks.build_suite`)
is what `builtin_trajectories` returns by default; replay re-runs the commands anyway and compares
fresh outputs to the recorded ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from importlib import resources
from typing import Any, Sequence

from pivot_envs.domains.terminal.tasks.format import BASH_TOOL, format_tool_output, system_prompt
from pivot_envs.domains.terminal.tasks.spec import ExpertStep, TaskSpec
from pivot_envs.errors import PivotError, ReplayError
from pivot_envs.sandbox import Sandbox, SandboxBackend, SandboxLimits, make_backend

logger = logging.getLogger(__name__)

SETUP_TIMEOUT_S = 60.0
TEST_TIMEOUT_S = 60.0
DATA_PACKAGE = "pivot_envs.domains.terminal.tasks"
SPLIT_FILES = {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl", "heldout_families": "heldout.jsonl"}


class ExpertFailedError(PivotError, RuntimeError):
    """The scripted expert (or a converted solution) did not make the task's test pass: a bug in
    the task family or the solution, not in the model. The message holds the test output."""


@dataclasses.dataclass(frozen=True)
class TaskCheck:
    """What `check_task` measured: the test's exit code before and after the expert ran."""

    task_id: str
    initial_test_exit: int
    final_test_exit: int
    failed_steps: int


def _backend(backend: SandboxBackend | str) -> SandboxBackend:
    return make_backend(backend) if isinstance(backend, str) else backend


def run_setup(sb: Sandbox, setup: str, env: dict[str, str] | None, task_id: str) -> None:
    """Run a task's setup script; a failing setup makes the task unusable (ReplayError)."""
    if not setup.strip():
        return
    res = sb.exec(setup, timeout=SETUP_TIMEOUT_S, env=env or None)
    if not res.ok:
        raise ReplayError(f"task {task_id}: setup script failed (exit {res.exit_code}, timed_out={res.timed_out}):\n"
                          f"{(res.stdout + res.stderr)[-2000:]}\nFix the task's setup script.")


def run_test(sb: Sandbox, test: str, env: dict[str, str] | None, timeout: float = TEST_TIMEOUT_S) -> tuple[bool, str]:
    """Run the task's test; returns (passed, output)."""
    res = sb.exec(test, timeout=timeout, env=env or None)
    return res.ok, format_tool_output(res, timeout_s=timeout)


def build_messages(instruction: str, steps: Sequence[ExpertStep], outputs: Sequence[str], final_message: str,
                   workdir: str = "/app") -> list[dict[str, Any]]:
    """system, user, then (assistant with one bash call, tool output) per step, then the final message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt(workdir)},
                                      {"role": "user", "content": instruction}]
    for k, (step, output) in enumerate(zip(steps, outputs)):
        call_id = f"call_{k}"
        messages.append({"role": "assistant", "content": step.thought,
                         "tool_calls": [{"id": call_id, "type": "function",
                                         "function": {"name": "bash",
                                                      "arguments": json.dumps({"command": step.command})}}]})
        messages.append({"role": "tool", "tool_call_id": call_id, "name": "bash", "content": output})
    messages.append({"role": "assistant", "content": final_message})
    return messages


def record_trajectory(task: TaskSpec, backend: SandboxBackend | str, *, image: str | None = None,
                      check_initial: bool = False) -> dict[str, Any]:
    """Run `task`'s setup and expert in a fresh sandbox and return the trajectory dict.

    Raises ExpertFailedError when the test fails after the expert (or, with `check_initial`, when
    the test already passes on the initial state); ReplayError when setup fails.
    """
    traj, _ = _record(task, _backend(backend), image=image, check_initial=check_initial)
    return traj


def check_task(task: TaskSpec, backend: SandboxBackend | str) -> TaskCheck:
    """Record `task` and also prove that its test fails before the expert acts."""
    _, check = _record(task, _backend(backend), image=None, check_initial=True)
    return check


def _record(task: TaskSpec, be: SandboxBackend, *, image: str | None, check_initial: bool) -> tuple[dict, TaskCheck]:
    image = image if image is not None else task.image
    limits = SandboxLimits(timeout_s=task.timeout_s)
    env = task.env or None
    initial_exit = -1
    with be.create(image, workdir=task.workdir, limits=limits) as sb:
        run_setup(sb, task.setup, env, task.id)
        if check_initial:
            # The test runs in a fork so that anything it writes cannot help the expert.
            snap = sb.snapshot()
            try:
                with be.fork(snap) as probe:
                    res = probe.exec(task.test, timeout=TEST_TIMEOUT_S, env=env)
                    initial_exit = res.exit_code
                    if res.ok:
                        raise ExpertFailedError(f"task {task.id}: the test already passes on the initial state; "
                                                f"it must check what the task asks for")
            finally:
                be.release(snap)
        outputs, failed = [], 0
        for step in task.expert:
            res = sb.exec(step.command, timeout=task.timeout_s, env=env)
            failed += 0 if res.ok else 1
            outputs.append(format_tool_output(res, timeout_s=task.timeout_s))
        passed, test_out = run_test(sb, task.test, env)
        if not passed:
            log = "\n".join(f"$ {s.command}\n{o}" for s, o in zip(task.expert, outputs))
            raise ExpertFailedError(f"task {task.id}: the expert did not pass the test.\nTest output:\n{test_out}\n"
                                    f"Expert transcript:\n{log[-4000:]}")
    task_dict = task.to_task_dict()
    task_dict["recorded_with"] = {"backend": be.name, "image": image or "(backend default)"}
    traj = {"id": task.id, "domain": "terminal", "task": task_dict, "tools": [BASH_TOOL],
            "messages": build_messages(task.instruction, task.expert, outputs, task.final_message, task.workdir)}
    return traj, TaskCheck(task.id, initial_exit, 0, failed)


def load_recorded(split: str) -> list[dict[str, Any]]:
    """The pre-recorded trajectories of `split` shipped in the package."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLIT_FILES)}")
    path = resources.files(DATA_PACKAGE).joinpath("data", SPLIT_FILES[split])
    if not path.is_file():
        raise FileNotFoundError(f"no pre-recorded suite at {path}; build it with "
                                f"`python -m pivot_envs.domains.terminal.tasks.build_suite`")
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def builtin_trajectories(split: str = "train", n: int | None = None, seed: int = 0,
                         backend: SandboxBackend | str | None = None) -> list[dict[str, Any]]:
    """Terminal SFT trajectories of `split`.

    With `backend=None` the pre-recorded suite is returned (first `n` when given; `seed` must be 0,
    the seed it was recorded with). With a backend, `n` tasks of `suite(split, n, seed)` are
    generated and recorded live.
    """
    from pivot_envs.domains.terminal.tasks.generator import suite

    if backend is None:
        if seed != 0:
            raise ValueError("the pre-recorded suite was made with seed=0; pass a backend to record other seeds live")
        recorded = load_recorded(split)
        return recorded if n is None else recorded[:n]
    be = _backend(backend)
    return [record_trajectory(t, be) for t in suite(split, 30 if n is None else n, seed)]
