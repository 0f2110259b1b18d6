"""PivotTerminal-v0: a Linux terminal task, reset to any turn of a demonstration.

## Description
The agent works in a sandbox (Docker container or local bubblewrap jail) with one tool, `bash`.
Each trajectory comes with a task (`setup` script, `test` script) and the demonstration's commands.
`reset` puts the sandbox into exactly the state it had after the demonstration's first k commands
(replayed once, then served from the snapshot cache) and returns the conversation up to turn k.

## Action Space
`AssistantActionSpace`: model text with Hermes `<tool_call>{"name": "bash", "arguments": {"command":
...}}</tool_call>` blocks, or an assistant message dict. Text without a tool call is a plain message
(the agent says it is done).

## Observation Space
`ConversationSpace`: `{"messages": [...], "tools": [bash schema]}`.

## Rewards
pivot mode: 1 if the action is functionally equivalent to the demonstration's (see `verifier.py`),
else 0; infrastructure failures are masked (`info["masked"]`). episode mode: 1 if the task's test
passes when the agent stops, else 0.

## Starting State
The state after the demonstration's actions 0..k-1 (`reset_to_turn=k` or `options={"turn": k}`).

## Episode End
pivot mode: after one step. episode mode: terminated when the agent answers without a tool call;
truncated after `max_turns` actions.

## Arguments
`trajectories` (None = the built-in suite, split `split`), `sandbox` ("docker" | "local" | a backend),
`verifier` ("execution" | "paper" | "exact" | an object with `judge`), `message_check` ("content" |
"task_state" | "any") and `message_overlap` (see verifier.py), `image`
(default image for tasks that name none), plus the PivotEnv arguments (`reset_to_turn`, `trajectory`,
`mode`, `parser`, `max_turns`).

## Examples
    env = gym.make("PivotTerminal-v0", reset_to_turn=2, sandbox="local")
    obs, info = env.reset(options={"trajectory": 0})
    obs, reward, terminated, truncated, info = env.step(info["reference"])   # reward 1.0
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
from typing import Any

from pivot_envs.base_env import PivotEnv
from pivot_envs.domains.terminal.tasks.format import format_tool_output
from pivot_envs.domains.terminal.verifier import (GIT_SUMMARY, ExactVerifier, ExecutionVerifier, Outcome,
                                                  PaperVerifier, bash_commands, normalise_archives)
from pivot_envs.errors import ReplayError, SandboxError
from pivot_envs.parsing import ParsedAction
from pivot_envs.sandbox import SandboxBackend, SandboxLimits, Snapshot, make_backend
from pivot_envs.sandbox.base import Sandbox
from pivot_envs.sandbox.cache import SnapshotCache
from pivot_envs.trajectory import Trajectory

log = logging.getLogger(__name__)

# One backend and one snapshot cache per sandbox kind, shared by every env of the process: envs made
# for profiling, training and evaluation then reuse each other's snapshots.
_SHARED: dict[str, tuple[SandboxBackend, SnapshotCache]] = {}
_SHARED_LOCK = threading.Lock()


def shared_sandbox(kind: str | SandboxBackend) -> tuple[SandboxBackend, SnapshotCache]:
    key = kind if isinstance(kind, str) else f"obj:{id(kind)}"
    with _SHARED_LOCK:
        if key not in _SHARED:
            backend = make_backend(kind) if isinstance(kind, str) else kind
            _SHARED[key] = (backend, SnapshotCache(backend))
        return _SHARED[key]


@atexit.register
def close_shared_sandboxes() -> None:
    """Release every shared snapshot and backend (also called by tests)."""
    with _SHARED_LOCK:
        for key, (backend, cache) in list(_SHARED.items()):
            try:
                cache.clear()
                if key.startswith("obj:"):
                    continue  # a backend the caller passed in is the caller's to close
                backend.close()
            except Exception:  # best effort at exit
                log.exception("closing sandbox backend %s", key)
        _SHARED.clear()


@dataclasses.dataclass
class TerminalState:
    """The state at turn k: a snapshot (pivot mode) and, in episode mode, a live sandbox forked from it."""

    traj: Trajectory
    turn: int
    snapshot: Snapshot
    key: str
    sandbox: Sandbox | None = None

    @property
    def prefix(self) -> list[dict]:
        return self.traj.prefix(self.turn)


class TerminalEnv(PivotEnv):
    __doc__ = __doc__
    domain = "terminal"

    def __init__(self, trajectories: Any = None, *, sandbox: str | SandboxBackend = "docker",
                 verifier: Any = "execution", message_check: str = "content", message_overlap: float = 0.3, split: str = "train",
                 image: str | None = None, limits: SandboxLimits | None = None, **kwargs: Any):
        self.split = split
        super().__init__(trajectories, **kwargs)
        self.backend, self.snapshots = shared_sandbox(sandbox)
        self.image = image
        self.limits = limits
        self.divergences: list[dict] = []
        if verifier == "execution":
            self.verifier = ExecutionVerifier(self, message_check=message_check, message_overlap=message_overlap)
        elif verifier == "paper":
            self.verifier = PaperVerifier()
        elif verifier == "exact":
            self.verifier = ExactVerifier()
        elif hasattr(verifier, "judge"):
            self.verifier = verifier
        else:
            raise ValueError(f"verifier must be 'execution', 'paper', 'exact' or an object with judge(); got {verifier!r}")

    def default_trajectories(self) -> list[Trajectory]:
        from pivot_envs.domains.terminal.tasks import builtin_trajectories

        return builtin_trajectories(self.split)

    # ------------------------------------------------------------------ sandbox plumbing
    def _image(self, traj: Trajectory) -> str | None:
        image = traj.task.get("image") or self.image
        if self.backend.name == "local" and image:
            raise SandboxError(f"trajectory {traj.id!r} needs the docker image {image!r}; the local backend runs "
                               "on the host's tools: use sandbox='docker'")
        return image

    def _limits(self, traj: Trajectory) -> SandboxLimits | None:
        lim = traj.task.get("limits")
        if not lim:
            return self.limits
        base = self.limits or SandboxLimits()
        return dataclasses.replace(base, **{k: v for k, v in lim.items() if hasattr(base, k)})

    def _exec(self, box: Sandbox, traj: Trajectory, cmd: str, timeout_s: float | None = None):
        """Run one command of `traj`'s task (its env, its per-command limit unless `timeout_s`) and
        count the sandbox time."""
        t0 = time.perf_counter()
        timeout = float(traj.task.get("timeout_s", 30.0)) if timeout_s is None else timeout_s
        result = box.exec(cmd, timeout=timeout, env=traj.task.get("env") or None)
        self.costs.sandbox_seconds += time.perf_counter() - t0
        return result

    def load_state(self, traj: Trajectory, k: int) -> TerminalState:
        workdir = traj.task.get("workdir", "/app")

        def prepare(box: Sandbox) -> None:
            for path, content in (traj.task.get("files") or {}).items():
                box.write_file(path, content)
            setup = traj.task.get("setup") or ""
            if setup.strip():
                res = self._exec(box, traj, setup)
                if not res.ok:
                    raise ReplayError(f"setup of {traj.id!r} failed (exit {res.exit_code}, timed out={res.timed_out}): "
                                      f"{res.stderr[-500:]}")

        def apply(box: Sandbox, action: dict, i: int) -> None:
            cmds, why = bash_commands(action)
            if cmds is None:
                raise ReplayError(f"{traj.id!r} turn {i}: demonstration action is not a bash call: {why}")
            recorded = traj.tool_outputs_after(i)
            for j, cmd in enumerate(cmds):
                res = self._exec(box, traj, cmd)
                self.costs.replay_turns += 1
                fresh = format_tool_output(res, timeout_s=float(traj.task.get("timeout_s", 30.0)))
                if j < len(recorded) and recorded[j].get("content") not in (None, fresh):
                    self.divergences.append({"trajectory": traj.id, "turn": i, "recorded": recorded[j]["content"][:300],
                                             "replayed": fresh[:300]})
                    log.info("replay of %s turn %d diverges from the recorded output", traj.id, i)

        actions = traj.actions_before(k)
        # every backend stores the cache key it was given in Snapshot.key: it identifies the state
        snap = self.snapshots.state_at(image=self._image(traj), task_key=traj.task_key(), actions=actions,
                                       workdir=workdir, limits=self._limits(traj), prepare=prepare, apply=apply)
        state = TerminalState(traj, k, snap, snap.key)
        if self.mode == "episode":
            state.sandbox = self.backend.fork(snap)
        return state

    def state_key(self, state: TerminalState) -> str:
        return state.key

    def run_in_fork(self, state: TerminalState, cmds: list[str]) -> Outcome:
        """Run `cmds` in order in a fresh fork of the state (every command runs; the last exit status
        counts) and measure the effect: file manifest of the state roots, git summary, stdout."""
        traj = state.traj
        t0 = time.perf_counter()
        box = self.backend.fork(state.snapshot)
        try:
            res = None
            out = []
            for cmd in cmds:
                res = self._exec(box, traj, cmd)
                self.costs.rollout_turns += 1
                out.append(res.stdout)
            roots = tuple(traj.task.get("state_roots") or (traj.task.get("workdir", "/app"),))
            # git internals are compared through GIT_SUMMARY instead (commit ids depend on messages)
            files = {p: e for p, e in box.manifest(roots).items() if "/.git/" not in p and not p.endswith("/.git")}
            files = normalise_archives(box, files)
            git = box.exec(GIT_SUMMARY.format(roots=" ".join(roots)), timeout=30).stdout
            return Outcome(res.exit_code, res.timed_out, "".join(out), files, git, time.perf_counter() - t0)
        finally:
            box.close()

    def run_task_test(self, state: TerminalState, box: Sandbox | None = None) -> bool | None:
        """Run the task's test in `box` (default: a fork of the state). None = could not run (infra)."""
        traj = state.traj
        own = box is None
        try:
            if own:
                box = self.backend.fork(state.snapshot)
            for path, content in (traj.task.get("test_files") or {}).items():
                box.write_file(path, content)
            if own:
                self.costs.rollout_turns += 1  # verifying a "done" message executes the test in a fork
            res = self._exec(box, traj, traj.task["test"], timeout_s=float(traj.task.get("test_timeout_s", 120.0)))
            return res.exit_code == 0 and not res.timed_out
        except SandboxError:
            log.exception("task test could not run")
            return None
        finally:
            if own and box is not None:
                box.close()

    # ------------------------------------------------------------------ hooks
    def judge(self, state: TerminalState, action: ParsedAction, reference: dict):
        return self.verifier.judge(state, action, reference)

    def execute(self, state: TerminalState, action: ParsedAction) -> list[dict]:
        msgs = []
        cmds, why = bash_commands(action)
        for i, call in enumerate(action.tool_calls):
            if cmds is None:
                content = f"error: {why}"
            else:
                res = self._exec(state.sandbox, state.traj, cmds[i])
                self.costs.rollout_turns += 1
                content = format_tool_output(res, timeout_s=float(state.traj.task.get("timeout_s", 30.0)))
            msgs.append({"role": "tool", "tool_call_id": call.id or f"call_{i}", "content": content})
        return msgs

    def episode_reward(self, state: TerminalState) -> tuple[float, dict]:
        passed = self.run_task_test(state, box=state.sandbox)
        if passed is None:
            return 0.0, {"failure_kind": "sandbox_error", "reason": "the task test could not run"}
        return (1.0 if passed else 0.0), {"success": bool(passed)}

    def close_state(self, state: TerminalState) -> None:
        if state.sandbox is not None:
            state.sandbox.close()
            state.sandbox = None
