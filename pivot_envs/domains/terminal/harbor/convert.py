"""Task folder -> trajectory: build the image, check the initial state, record the solution.

Outcomes of `convert_task` (also the columns of the folder summary):
* converted: the solution, cut into steps (splitter.py), ran one step per assistant turn and the tests
  then passed; the trajectory is ready for every mode.
* episode-only: the task ships no solution. The record has the instruction, image and tests, one
  placeholder assistant turn, and `task["episode_only"] = True`: usable with `mode="episode"` at turn 0
  (evaluation, E2E-RL), not as a demonstration.
* refused (`TaskRefusedError`, with a `kind`): the tests pass on the initial state (a free reward), the
  tests or the solution need the network, the task declares `allow_internet = true` and does not pass
  offline, the solution fails its own tests, the image does not build, or the folder is malformed.
  The message keeps the whole reason (the failing step's or the test's full output, the build log):
  the status file of a folder conversion stores it as it is.

`allow_internet = true` means, in Harbor, that the agent may use the network. Sandboxes here never
have network at run time, so such a task is converted offline (the default, `internet_tasks="offline"`)
and kept only when its solution passes its tests that way; the record is then flagged
`declares_internet` (`task["flags"]`). `internet_tasks="refuse"` refuses them before any build.

Timeouts: a task may declare more time than one sandbox command may take (a backend's
`max_exec_timeout_s`, 3540 s for docker). The test's limit is then clamped to that ceiling, and the
record says so (`task["timeouts_clamped"]`: declared and used seconds), instead of failing the
conversion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

from pivot_envs.domains.terminal.harbor.offline import (
    OfflinePlan,
    TestsNeedNetworkError,
    plan_test_dependencies,
    shell_scripts,
)
from pivot_envs.domains.terminal.harbor.splitter import split_solution
from pivot_envs.domains.terminal.harbor.task import (
    HarborTask,
    HarborTaskError,
    load_task,
)
from pivot_envs.domains.terminal.harbor.verifier_script import test_script
from pivot_envs.domains.terminal.tasks.recorder import (
    record_commands,
    trajectory_record,
)
from pivot_envs.domains.terminal.tasks.spec import ExpertStep
from pivot_envs.sandbox import SandboxBackend, make_backend

FINAL_MESSAGE = "The task is complete."
EPISODE_ONLY_MESSAGE = "(no demonstration: this task ships no solution; use it in episode mode from turn 0)"
# Part of every image tag: bump when the build recipe (offline layer, python shim) changes.
BUILD_RECIPE = "harbor-build-3"
# Output that says a command tried to reach the network.
_NETWORK_FAILURE_RE = re.compile(r"Could not resolve host|Temporary failure in name resolution|Network is unreachable|"
                                 r"Failed to establish a new connection|No matching distribution found|"
                                 r"failed to fetch|Connection refused|dial tcp|Name or service not known", flags=re.IGNORECASE)


class TaskRefusedError(HarborTaskError):
    """A task folder that cannot become an honest trajectory. `kind` names the reason class:
    invalid_task, needs_network, declares_internet, passes_initially, solution_fails, image_build_failed."""

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class ConvertedTask:
    """A converted task's trajectory plus what the recording measured."""

    trajectory: dict[str, Any]
    initial_passed: bool | None  # the test's outcome before the solution (None: not checked)
    step_exit_codes: list[int]
    status: str = "converted"  # or "episode_only"
    flags: tuple[str, ...] = ()


def offline_plan(task: HarborTask) -> OfflinePlan:
    """How the task's tests (and the Python packages its solution installs) run offline; raises
    TestsNeedNetworkError when they cannot."""
    plan = plan_test_dependencies(task.tests_bundle, shell_scripts(task.tests_bundle, task.test_entry))
    return plan.with_solution(task.solution) if task.solution is not None else plan


def clamped_timeouts(task: HarborTask, max_exec_timeout_s: float | None) -> dict[str, dict[str, float]]:
    """The task's per-command limits that exceed the backend's ceiling for one command, as
    {field: {"declared": s, "used": ceiling}}. Public tasks give their verifier up to an hour
    (3600 s) while docker's ceiling is 3540 s; the conversion failed with a raw ValueError from the
    backend. The agent's total budget (`agent_timeout_s`) is no per-command limit and is kept."""
    if max_exec_timeout_s is None:
        return {}
    declared = {"timeout_s": task.limits.timeout_s, "test_timeout_s": task.test_timeout_s}
    return {k: {"declared": v, "used": float(max_exec_timeout_s)} for k, v in declared.items() if v > max_exec_timeout_s}


def to_task_dict(task: HarborTask, image: str | None, plan: OfflinePlan | None = None, *,
                 max_exec_timeout_s: float | None = None) -> dict[str, Any]:
    """The trajectory's `task` field for a converted task; limits above `max_exec_timeout_s` (the
    backend's ceiling for one command) are clamped to it and listed in `timeouts_clamped`."""
    plan = plan if plan is not None else offline_plan(task)
    clamped = clamped_timeouts(task, max_exec_timeout_s)
    return {
        "image": image, "workdir": task.workdir, "setup": "", "test": test_script(task, plan),
        "timeout_s": clamped.get("timeout_s", {}).get("used", task.limits.timeout_s),
        "test_timeout_s": clamped.get("test_timeout_s", {}).get("used", task.test_timeout_s),
        **({"timeouts_clamped": clamped} if clamped else {}),
        "agent_timeout_s": task.agent_timeout_s, "instruction": task.instruction,
        "limits": {"cpus": task.limits.cpus, "memory_mb": task.limits.memory_mb, "root_caps": task.limits.root_caps},
        "source": {"format": task.layout, "name": task.name, "content_hash": task.content_hash()[:16],
                   "offline_rewrites": list(plan.notes)},
        "metadata": task.metadata,
        **({"env": plan.command_env} if plan.command_env else {}),
    }


def _builder() -> Any:
    from pivot_envs.images import build as builder

    return builder


def image_tag(task: HarborTask, plan: OfflinePlan, fallback_base: str) -> str:
    """A tag that changes whenever the image would: build context, test dependencies, fallback base, recipe.
    Images are cached by it, so converting a task again (or a resumed run) builds nothing."""
    builder = _builder()
    h = hashlib.sha256("\0".join([BUILD_RECIPE, task.build_context_hash(), plan.key(), fallback_base,
                                  builder.image_id(fallback_base) or ""]).encode())
    return f"pivotrl/task-{task.slug}:{h.hexdigest()[:12]}"


def build_image(task: HarborTask, fallback_base: str | None = None, *, plan: OfflinePlan | None = None,
                force: bool = False) -> str:
    """Build (or reuse) the task's image, with its tests' dependencies installed; FROM images that cannot
    be pulled fall back to the local sandbox base."""
    builder = _builder()
    plan = plan if plan is not None else offline_plan(task)
    base = fallback_base or builder.DEFAULT_IMAGE
    tag = image_tag(task, plan, base)
    try:
        if task.generated_dockerfile is None:
            return builder.build_task_image(task.dockerfile_dir, tag, base, force=force,
                                            extra_lines=plan.dockerfile_lines())
        with tempfile.TemporaryDirectory(prefix="pivotrl-harbor-context-") as context:
            (Path(context) / "Dockerfile").write_text(task.generated_dockerfile)
            return builder.build_task_image(context, tag, base, force=force, extra_lines=plan.dockerfile_lines())
    except builder.ImageBuildError as e:
        log = getattr(e, "output", "")  # the whole build log: the message keeps only its tail
        raise TaskRefusedError(f"{task.path}: the image does not build: {e}"
                               + (f"\nWhole build output:\n{log}" if log and log not in str(e) else ""),
                               kind="image_build_failed") from None


def _refuse_initial_pass(task: HarborTask, initial_passed: bool | None) -> None:
    if initial_passed:
        raise TaskRefusedError(f"{task.path}: the tests already pass on the initial state, before any solution step; "
                               "converting it would hand a free reward to an agent that does nothing. Make the tests "
                               "check what the instruction asks for.", kind="passes_initially")


def record_solution(task: HarborTask, backend: SandboxBackend | str, image: str, *, plan: OfflinePlan | None = None,
                    check_initial: bool = True) -> ConvertedTask:
    """Run the solution step by step in a sandbox of `image` and return the SFT trajectory; a task
    without a solution gives its episode-only record. Raises TaskRefusedError (see the module doc)."""
    plan = plan if plan is not None else offline_plan(task)
    be = make_backend(backend) if isinstance(backend, str) else backend
    task_dict = to_task_dict(task, image, plan, max_exec_timeout_s=be.max_exec_timeout_s)
    limits = dataclasses.replace(task.limits, timeout_s=task_dict["timeout_s"])
    parsed = split_solution(task.solution) if task.solution is not None else None
    if parsed is not None and not parsed.steps:
        raise TaskRefusedError(f"{task.path}: the solution has no commands", kind="invalid_task")
    commands = parsed.steps if parsed is not None else []
    recording = record_commands(be, image, workdir=task.workdir, limits=limits, commands=commands,
                                test=task_dict["test"], env=task_dict.get("env"), task_id=task.name,
                                test_timeout_s=task_dict["test_timeout_s"],
                                check_initial=check_initial and parsed is not None,
                                stop_on_error=bool(parsed and parsed.stop_on_error))
    initial_passed = None if recording.initial_test is None else recording.initial_test.ok
    if parsed is None and check_initial:  # no commands ran: the final test saw the initial state
        initial_passed = recording.final_test.ok
    _refuse_initial_pass(task, initial_passed)
    task_dict["recorded_with"] = {"backend": be.name, "image": image}
    task_dict["background_processes"] = recording.background_processes()
    traj_id = f"harbor-{task.slug}"
    if parsed is None:
        task_dict["episode_only"] = True
        traj = trajectory_record(traj_id, task_dict, task.instruction, [], [], EPISODE_ONLY_MESSAGE, task.workdir)
        return ConvertedTask(traj, initial_passed, [], "episode_only")
    if recording.stopped_at is not None or not recording.final_test.ok:
        k = recording.stopped_at
        # The whole output: the line that says why ("Failed to download ...") is often far from the end.
        what = (f"solution step {k} failed under set -e:\n$ {commands[k]}\n{recording.outputs[k]}"
                if k is not None else f"the tests fail after the solution ran:\n{recording.test_output}")
        what += recording.process_note()
        text = "\n".join(recording.outputs) + recording.test_output
        kind = "needs_network" if _NETWORK_FAILURE_RE.search(text) else "solution_fails"
        hint = (" The output shows a network access; sandboxes have none at run time." if kind == "needs_network"
                else "")
        if task.allow_internet:
            kind, hint = "declares_internet", (" The task declares [environment] allow_internet = true and does not "
                                               "pass offline (sandboxes have no network at run time)." + hint)
        raise TaskRefusedError(f"{task.path}: {what}{hint}", kind=kind)
    flags = ("declares_internet",) if task.allow_internet else ()
    if flags:
        task_dict["flags"] = list(flags)
    steps = [ExpertStep("", s) for s in commands]
    traj = trajectory_record(traj_id, task_dict, task.instruction, steps, recording.outputs, FINAL_MESSAGE,
                             task.workdir)
    return ConvertedTask(traj, initial_passed, recording.exit_codes, "converted", flags)


def convert_task(path: str | Path, backend: SandboxBackend | str = "docker", *, fallback_base: str | None = None,
                 check_initial: bool = True, internet_tasks: str = "offline") -> ConvertedTask:
    """Read a task folder, plan its offline tests, build its image and record its solution.
    `internet_tasks`: "offline" (default) converts `allow_internet = true` tasks when they pass
    offline, flagged `declares_internet`; "refuse" refuses them before any build."""
    if internet_tasks not in ("refuse", "offline"):
        raise ValueError(f"internet_tasks must be 'refuse' or 'offline', got {internet_tasks!r}")
    try:
        task = load_task(path)
    except HarborTaskError as e:
        raise TaskRefusedError(str(e), kind="invalid_task") from None
    if task.allow_internet and internet_tasks == "refuse":
        raise TaskRefusedError(f"{task.path}: task.toml declares [environment] allow_internet = true, but sandboxes "
                               "here never have network at run time, and internet_tasks='refuse' was asked for; the "
                               "default (internet_tasks='offline', CLI: --internet-tasks offline) converts it when it "
                               "passes offline", kind="declares_internet")
    try:
        plan = offline_plan(task)
        if task.solution is not None:
            split_solution(task.solution)  # a script the splitter cannot read is refused before any build
    except TestsNeedNetworkError as e:
        raise TaskRefusedError(f"{task.path}: {e}", kind="needs_network") from None
    except HarborTaskError as e:
        raise TaskRefusedError(f"{task.path}: {e}", kind="invalid_task") from None
    image = build_image(task, fallback_base, plan=plan)
    return record_solution(task, backend, image, plan=plan, check_initial=check_initial)
