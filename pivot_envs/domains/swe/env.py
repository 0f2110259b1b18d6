"""PivotSWE-v0: fix a bug in a real Python repository, reset to any turn of a demonstration.

## Description
The agent works in a Docker container whose `/testbed` is a git repository at the instance's base
commit (a real PyPI project with an injected bug, or any SWE-bench-format instance with an image).
Two tools: `bash` and `str_replace_editor` (view / create / str_replace / insert / undo_edit).
`reset` puts the container into exactly the state it had after the demonstration's first k actions
(replayed once, then served from the snapshot cache) and returns the conversation up to turn k.

## Action Space
`AssistantActionSpace`: model text with Hermes `<tool_call>{...}</tool_call>` blocks, or an assistant
message dict. Text without a tool call is a plain message: the agent submits.

## Observation Space
`ConversationSpace`: `{"messages": [...], "tools": [bash, str_replace_editor]}`.

## Rewards
pivot mode: 1 if the action is functionally equivalent to the demonstration's (verifier.py: same
repository diff, or an edit that changes the same tests' outcomes the same way; a read-only action
that leaves the repository unchanged and returns the reference's information), else 0;
infrastructure failures are masked (`info["masked"]`). `verifier="paper"`: the paper's tool-name
rule. episode mode: 1 when the agent submits and every FAIL_TO_PASS test passes and every
PASS_TO_PASS test still passes (SWE-bench's "resolved"), else 0.

## Starting State
The state after the demonstration's actions 0..k-1 (`reset_to_turn=k` or `options={"turn": k}`).

## Episode End
pivot mode: after one step. episode mode: terminated when the agent answers without a tool call;
truncated after `max_turns` actions.

## Arguments
`trajectories` (None = the built-in suite, split `split`: "train" | "val" | "test" | "all"),
`sandbox` ("docker" or a docker backend), `verifier` ("execution" | "paper" | an object with
`judge`), `info_recall` (read-only actions: share of the reference's information lines the action must
return, default 0.9), plus the PivotEnv arguments (`reset_to_turn`, `trajectory`, `mode`, `parser`,
`max_turns`).

## Examples
    env = gym.make("PivotSWE-v0", reset_to_turn=3)
    obs, info = env.reset(options={"trajectory": 0})
    obs, reward, terminated, truncated, info = env.step(info["reference"])   # reward 1.0
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pivot_envs.domains.swe import repository
from pivot_envs.domains.swe.repository import TestRun
from pivot_envs.domains.swe.tools import CallResult, check_call, run_call
from pivot_envs.errors import ReplayError, SandboxError
from pivot_envs.parsing import ParsedAction
from pivot_envs.registration import spec_of_domain
from pivot_envs.sandbox import SandboxBackend
from pivot_envs.sandbox.base import ExecResult, Sandbox
from pivot_envs.sandboxed_env import SandboxedEnv, SandboxState
from pivot_envs.trajectory import Trajectory, tool_calls_of

log = logging.getLogger(__name__)


class SWEEnv(SandboxedEnv):
    __doc__ = __doc__
    domain = "swe"

    def __init__(self, trajectories: Any = None, *, sandbox: str | SandboxBackend = "docker",
                 verifier: Any = "execution", split: str = "train", info_recall: float = 0.9, **kwargs: Any):
        self.split = split
        super().__init__(trajectories, sandbox=sandbox, **kwargs)
        if not self.backend.capabilities.runs_images:
            self.close()  # gives back its use of the shared backend
            raise SandboxError(f"PivotSWE-v0 runs repositories in their docker images; sandbox={self.backend.name!r} "
                               f"cannot run them: use sandbox='docker'")
        self.info_recall = info_recall
        self.verifier: Any = spec_of_domain(self.domain).build_verifier(self, verifier)

    def default_trajectories(self) -> list[Trajectory | dict]:
        from pivot_envs.domains.swe.expert import builtin_trajectories

        return builtin_trajectories(self.split)

    # ------------------------------------------------------------------ sandbox plumbing
    def _exec(self, traj: Trajectory) -> Any:
        """`exec_in` for `traj`, plus a `workdir` (the repository's own measurements run from `/`, so that
        they still answer when an action deleted /testbed)."""
        def run(box: Sandbox, cmd: str, timeout_s: float | None = None, workdir: str | None = None) -> ExecResult:
            if workdir is None:
                return self.exec_in(box, traj, cmd, timeout_s)
            t0 = time.perf_counter()
            res = box.exec(cmd, timeout=timeout_s or self.command_timeout(traj), workdir=workdir)
            self.costs.sandbox_seconds += time.perf_counter() - t0
            return res
        return run

    def task_image(self, traj: Trajectory) -> str | None:
        """The instance's image; the images of our repositories (pivot_envs/images/swe) are built on first use
        (cached afterwards: a few seconds each, the sdist comes from PyPI once)."""
        image = super().task_image(traj)
        if image:
            from pivot_envs.images.swe.repos import ensure_image

            ensure_image(image)
        return image

    def prepare_task(self, box: Sandbox, traj: Trajectory) -> None:
        """Put /testbed at the base commit and check that the instance's tests run and show the bug
        (once per instance: the snapshot cache keeps the result)."""
        repository.checkout_instance(box, traj.task, self._exec(traj))
        if not traj.task.get("test_patch"):  # with a test patch, FAIL_TO_PASS tests may not exist yet
            repository.check_tests_run(box, traj.task, self._exec(traj))

    def run_calls(self, box: Sandbox, traj: Trajectory, action: ParsedAction | dict) -> list[CallResult]:
        """Run an action's tool calls in order (each must pass `check_call`)."""
        calls = action.tool_calls if isinstance(action, ParsedAction) else tool_calls_of(action)
        run = self._exec(traj)
        return [run_call(box, c, lambda b, cmd: run(b, cmd, None), self.command_timeout(traj)) for c in calls]

    def replay_action(self, box: Sandbox, traj: Trajectory, action: dict, i: int, *,
                      watch: bool = False) -> None:
        # checks_processes is off here (SWE demonstrations edit code and run tests): `watch` never comes
        for call in tool_calls_of(action):
            why = check_call(call)
            if why:
                raise ReplayError(f"{traj.id!r} turn {i}: the demonstration's call cannot run: {why}")
        recorded = traj.tool_outputs_after(i)
        for j, out in enumerate(self.run_calls(box, traj, action)):
            self.costs.replay_turns += 1
            if j < len(recorded) and recorded[j].get("content") not in (None, out.content):
                self.divergences.append({"trajectory": traj.id, "turn": i, "recorded": recorded[j]["content"][:300],
                                         "replayed": out.content[:300]})
                log.info("replay of %s turn %d diverges from the recorded output", traj.id, i)

    def repo_diff(self, box: Sandbox, traj: Trajectory) -> str:
        return repository.repo_diff(box, traj.task, self._exec(traj))

    def run_tests(self, box: Sandbox, traj: Trajectory) -> TestRun:
        return repository.run_tests(box, traj.task, self._exec(traj))

    def grade_state(self, state: SandboxState, box: Sandbox | None = None) -> tuple[bool, dict] | None:
        """(resolved, report) of the repository in `box` (default: a fork of the state); None = the
        tests could not run (infrastructure)."""
        try:
            with self.box_or_fork(state, box) as b:
                return repository.grade(state.traj.task, self.run_tests(b, state.traj))
        except SandboxError:
            log.exception("the tests could not run")
            return None

    def run_task_test(self, state: SandboxState, box: Sandbox | None = None) -> bool | None:
        graded = self.grade_state(state, box)
        return None if graded is None else graded[0]

    # ------------------------------------------------------------------ hooks
    def judge(self, state: SandboxState, action: ParsedAction, reference: dict):
        return self.verifier.judge(state, action, reference)

    def execute(self, state: SandboxState, action: ParsedAction) -> list[dict]:
        msgs = []
        assert state.sandbox is not None, "episode mode holds a live sandbox"
        for i, call in enumerate(action.tool_calls):
            why = check_call(call)
            if why:
                content = f"error: {why}"
            else:
                content = run_call(state.sandbox, call, lambda b, cmd: self.exec_in(b, state.traj, cmd),
                                   self.command_timeout(state.traj)).content
                self.costs.rollout_turns += 1
            msgs.append({"role": "tool", "tool_call_id": call.id or f"call_{i}", "name": call.name,
                         "content": content})
        return msgs

    def episode_reward(self, state: SandboxState) -> tuple[float, dict]:
        graded = self.grade_state(state, box=state.sandbox)
        if graded is None:
            return 0.0, {"failure_kind": "sandbox_error", "reason": "the tests could not run"}
        resolved, report = graded
        return (1.0 if resolved else 0.0), {"success": resolved, "resolved": resolved, "tests": report}
