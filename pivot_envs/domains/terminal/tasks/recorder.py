"""Record expert trajectories by running tasks in a real sandbox.

`record_trajectory(task, backend)` runs the task's setup, then each expert command, one per
assistant turn, and stores the real outputs as tool messages (formatted by `format_tool_output`,
the same function the live env uses). It then runs the task's test and raises `ExpertFailedError`
if the expert did not solve the task. `check_task` also proves that the test FAILS on the initial
state, so a test that any state passes is caught.

`record_commands` is the one recorder: the built-in suite and converted Harbor / Terminal-Bench
tasks (`pivot_envs.domains.terminal.harbor`) both run their commands through it, and
`trajectory_record` builds both trajectories.

The pre-recorded suite (`data/*.jsonl`, made by `python -m pivot_envs.domains.terminal.tasks.build_suite`)
is what `builtin_trajectories` returns by default; replay re-runs the commands anyway and compares
fresh outputs to the recorded ones.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

from pivot_envs.domains.terminal.tasks.format import (
    BASH_TOOL,
    format_tool_output,
    system_prompt,
)
from pivot_envs.domains.terminal.tasks.spec import ExpertStep, TaskSpec
from pivot_envs.errors import PivotError, ReplayError
from pivot_envs.processes import describe, keeps_processes, split_watched, watched
from pivot_envs.sandbox import Sandbox, SandboxBackend, SandboxLimits, make_backend
from pivot_envs.sandbox.base import ExecResult

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
    traj, _ = record_with_check(task, _backend(backend), image=image, check_initial=check_initial)
    return traj


def check_task(task: TaskSpec, backend: SandboxBackend | str) -> TaskCheck:
    """Record `task` and also prove that its test fails before the expert acts."""
    _, check = record_with_check(task, _backend(backend), image=None, check_initial=True)
    return check


def record_with_check(task: TaskSpec, be: SandboxBackend, *, image: str | None,
                      check_initial: bool) -> tuple[dict, TaskCheck]:
    """Run the task's expert in a sandbox of `be`: its recorded trajectory and the task check's verdicts
    (shared by `record_trajectory`, `check_task` and the suite builder)."""
    image = image if image is not None else task.image
    recording = record_commands(be, image, workdir=task.workdir, limits=SandboxLimits(timeout_s=task.timeout_s),
                                commands=[s.command for s in task.expert], test=task.test, setup=task.setup,
                                env=task.env or None, task_id=task.id, check_initial=check_initial)
    if recording.initial_test is not None and recording.initial_test.ok:
        raise TestPassesInitiallyError(f"task {task.id}: the test already passes on the initial state; "
                                       f"it must check what the task asks for")
    if not recording.final_test.ok:
        raise ExpertFailedError(f"task {task.id}: the expert did not pass the test.\n"
                                f"{recording.failure_report(task.expert)}")
    task_dict = task.to_task_dict()
    task_dict["recorded_with"] = {"backend": be.name, "image": image or "(backend default)"}
    task_dict["background_processes"] = recording.background_processes()
    traj = trajectory_record(task.id, task_dict, task.instruction, task.expert, recording.outputs,
                             task.final_message, task.workdir)
    initial_exit = -1 if recording.initial_test is None else recording.initial_test.exit_code
    return traj, TaskCheck(task.id, initial_exit, 0, recording.failed_steps)


# ----------------------------------------------------------------------------- the one recorder


class TestPassesInitiallyError(ExpertFailedError):
    """The task's test already passes before any expert step ran: it would hand out free rewards."""

    __test__ = False  # not a pytest class


@dataclasses.dataclass(frozen=True)
class Recording:
    """What `record_commands` measured. `initial_test` is None when the initial state was not checked;
    `stopped_at` is the step that failed under `stop_on_error` (None: every step ran)."""

    outputs: list[str]
    exit_codes: list[int]
    initial_test: ExecResult | None
    final_test: ExecResult
    test_output: str
    stopped_at: int | None = None
    # per command: the processes it left running (None: could not tell, see pivot_envs/processes.py)
    left_running: tuple[tuple[str, ...] | None, ...] = ()
    keeps_processes: bool = True  # does the backend keep them running between commands? (asked when any did)

    @property
    def failed_steps(self) -> int:
        return sum(1 for c in self.exit_codes if c != 0)

    def background_processes(self, turn_of: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """`task["background_processes"]` of the trajectory: the turns whose command left processes
        running (`turn_of[i]`: the turn of command i; default: command i is turn i), with their command
        lines. Recorded even when empty: it says the check was done (the env then trusts it)."""
        turns: dict[int, list[str]] = {}
        for i, left in enumerate(self.left_running):
            if left:
                turns.setdefault(turn_of[i] if turn_of is not None else i, []).extend(left)
        return [{"turn": k, "processes": procs} for k, procs in sorted(turns.items())]

    def process_note(self) -> str:
        """Why a solution that started a service fails on a backend that cannot keep it ('' otherwise)."""
        left = {i: p for i, p in enumerate(self.left_running) if p}
        if not left or self.keeps_processes:
            return ""
        return (f"\nCommand(s) {describe(left).replace('turn', 'step')} left processes running, which this backend "
                "ends when the command returns (each command has its own process namespace): a task that needs "
                "a running service can only be recorded on docker.")

    def failure_report(self, steps: Sequence[ExpertStep | str]) -> str:
        """The test output and the transcript, for error messages."""
        commands = [s.command if isinstance(s, ExpertStep) else s for s in steps]
        log = "\n".join(f"$ {c}\n{o}" for c, o in zip(commands, self.outputs))
        return f"Test output:\n{self.test_output}\nExpert transcript:\n{log[-4000:]}{self.process_note()}"


def record_commands(be: SandboxBackend, image: str | None, *, workdir: str, limits: SandboxLimits,
                    commands: Sequence[str], test: str, setup: str = "", env: dict[str, str] | None = None,
                    task_id: str = "", test_timeout_s: float = TEST_TIMEOUT_S, check_initial: bool = False,
                    stop_on_error: bool = False, files: dict[str, str] | None = None) -> Recording:
    """Run `setup`, then each command (one per assistant turn, each in a fresh shell), then `test`, in a
    fresh sandbox of `image`; outputs are formatted as the live env formats them.

    With `check_initial`, the test first runs in a fork of the initial state (a fork, so that what it
    writes cannot help the commands). With `stop_on_error`, recording stops at the first failing
    command (a solve.sh under `set -e`) and the test still runs, so the caller sees why.
    `files` (path -> text) are written before `setup` runs, as the env's `prepare_task` writes a
    task's `files`. Both the built-in suite and converted Harbor tasks are recorded here. Each command
    runs watched (`pivot_envs.processes`): the processes it leaves running are in `left_running`.
    """
    timeout = limits.timeout_s
    initial: ExecResult | None = None
    outputs: list[str] = []
    codes: list[int] = []
    left_running: list[tuple[str, ...] | None] = []
    stopped_at: int | None = None
    with be.create(image, workdir=workdir, limits=limits) as sb:
        for path, content in (files or {}).items():
            sb.write_file(path, content)
        run_setup(sb, setup, env, task_id)
        if check_initial:
            snap = sb.snapshot()
            try:
                with be.fork(snap) as probe:
                    initial = probe.exec(test, timeout=test_timeout_s, env=env or None)
            finally:
                be.release(snap)
        for k, command in enumerate(commands):
            res, left = split_watched(sb.exec(watched(command), timeout=timeout, env=env or None))
            left_running.append(left)
            outputs.append(format_tool_output(res, timeout_s=timeout))
            codes.append(-1 if res.timed_out else res.exit_code)
            if stop_on_error and not res.ok:
                stopped_at = k
                break
        final = sb.exec(test, timeout=test_timeout_s, env=env or None)
    return Recording(outputs, codes, initial, final, format_tool_output(final, timeout_s=test_timeout_s), stopped_at,
                     tuple(left_running), keeps_processes(be) if any(left_running) else True)


def trajectory_record(traj_id: str, task_dict: dict[str, Any], instruction: str, steps: Sequence[ExpertStep],
                      outputs: Sequence[str], final_message: str, workdir: str) -> dict[str, Any]:
    """The trajectory JSON object (pivot_envs/trajectory.py) of a recorded task."""
    return {"id": traj_id, "domain": "terminal", "task": task_dict, "tools": [BASH_TOOL],
            "messages": build_messages(instruction, steps, outputs, final_message, workdir)}


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
