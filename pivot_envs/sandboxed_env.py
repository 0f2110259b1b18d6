"""`SandboxedEnv`: the part of a domain env that lives in a sandbox (terminal, SWE, ...).

It owns what every sandboxed domain needs and nothing domain-specific:
- one backend and one snapshot cache per sandbox kind, shared by every env of the process
  (`shared_sandbox`), so envs made for profiling, training and evaluation reuse each other's snapshots;
- `load_state`: the state at turn k = the snapshot after the task's files and setup script and the
  demonstration's actions 0..k-1 (replayed once, then served from the cache); the domain says how
  one action replays (`replay_action`);
- the cost-metered exec (`exec_in`: every command of a task runs with its env and per-command
  limit, and its sandbox time is counted), `run_in_fork` (commands in a fresh fork of the state,
  measured as an `effects.Outcome`) and `run_task_test` (the task's own check).

A domain subclass implements `replay_action`, `judge`, `execute` (episode mode) and may override
`state_roots` (what part of the file system is the state) and `prepare_task`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from pivot_envs.base_env import PivotEnv
from pivot_envs.effects import Outcome, measure_files, persistent_roots
from pivot_envs.errors import ReplayError, SandboxError
from pivot_envs.sandbox import SandboxBackend, SandboxLimits, Snapshot, make_backend
from pivot_envs.sandbox.base import ExecResult, Sandbox
from pivot_envs.sandbox.cache import SnapshotCache
from pivot_envs.trajectory import Trajectory

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_TEST_TIMEOUT_S = 120.0

_SHARED: dict[str, tuple[SandboxBackend, SnapshotCache]] = {}
_SHARED_LOCK = threading.Lock()


def _forget_inherited_sandboxes() -> None:
    """In a forked child (AsyncVectorEnv, multiprocessing), the parent's backends are not ours: their
    snapshot ids and directories would collide with the parent's, and closing them at exit would
    delete the parent's state. Drop them (without closing); the child builds its own on first use."""
    global _SHARED_LOCK
    _SHARED.clear()
    _SHARED_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_inherited_sandboxes)


def shared_sandbox(kind: str | SandboxBackend) -> tuple[SandboxBackend, SnapshotCache]:
    """The process-wide backend and snapshot cache for `kind` ("docker", "local" or a backend object)."""
    key = kind if isinstance(kind, str) else f"obj:{id(kind)}"
    with _SHARED_LOCK:
        if key not in _SHARED:
            backend = make_backend(kind) if isinstance(kind, str) else kind
            _SHARED[key] = (backend, SnapshotCache(backend))
        return _SHARED[key]


@atexit.register
def close_shared_sandboxes() -> None:
    """Release every shared snapshot and backend of this process (`shared_sandbox`): call it when done
    with the envs (their snapshots otherwise live until exit, where this runs too). Backends passed
    in as objects lose their snapshots but stay open: closing them is their owner's job. An env made
    afterwards starts a fresh backend and cache."""
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
class SandboxState:
    """The state at turn k: a snapshot (pivot mode) and, in episode mode, a live sandbox forked from it."""

    traj: Trajectory
    turn: int
    snapshot: Snapshot
    key: str
    sandbox: Sandbox | None = None

    @property
    def prefix(self) -> list[dict]:
        return self.traj.prefix(self.turn)


class SandboxedEnv(PivotEnv):
    """A `PivotEnv` whose state is a sandbox snapshot (see the module docstring).

    Arguments (besides PivotEnv's): `sandbox` ("docker" | "local" | a backend object), `image`
    (default image for tasks that name none), `limits` (default `SandboxLimits`; a task's
    `"limits"` entry overrides fields).
    """

    def __init__(self, trajectories: Any = None, *, sandbox: str | SandboxBackend = "docker",
                 image: str | None = None, limits: SandboxLimits | None = None, **kwargs: Any):
        super().__init__(trajectories, **kwargs)
        self.backend, self.snapshots = shared_sandbox(sandbox)
        self.image = image
        self.limits = limits
        self.divergences: list[dict] = []

    # ------------------------------------------------------------------ domain hooks
    def replay_action(self, box: Sandbox, traj: Trajectory, action: dict, i: int) -> None:
        """Run the demonstration's action `i` in `box` while rebuilding a state (raise ReplayError
        when it cannot be replayed)."""
        raise NotImplementedError

    def prepare_task(self, box: Sandbox, traj: Trajectory) -> None:
        """Before turn 0: write the task's `files` and run its `setup` script (not an action)."""
        for path, content in (traj.task.get("files") or {}).items():
            box.write_file(path, content)
        setup = traj.task.get("setup") or ""
        if setup.strip():
            res = self.exec_in(box, traj, setup)
            if not res.ok:  # both streams: a script that fails quietly on stderr often said why on stdout
                said = "; ".join(f"{name}: {text.strip()[-400:]}" for name, text in
                                 (("stderr", res.stderr), ("stdout", res.stdout)) if text.strip())
                raise ReplayError(f"setup of {traj.id!r} failed (exit {res.exit_code}, timed out={res.timed_out}): "
                                  f"{said or 'no output (a `set -e` script stops at the first failing command)'}")

    def state_roots(self, traj: Trajectory, box: Sandbox) -> tuple[str, ...]:
        """The directories whose contents are the task's state (compared by verifiers): the task's
        `state_roots`, else every directory the backend persists (`effects.persistent_roots`)."""
        return tuple(traj.task.get("state_roots") or persistent_roots(box, self.workdir(traj)))

    # ------------------------------------------------------------------ task settings
    @staticmethod
    def workdir(traj: Trajectory) -> str:
        return traj.task.get("workdir", "/app")

    @staticmethod
    def command_timeout(traj: Trajectory) -> float:
        return float(traj.task.get("timeout_s", DEFAULT_TIMEOUT_S))

    def task_image(self, traj: Trajectory) -> str | None:
        image = traj.task.get("image") or self.image
        if image and not self.backend.capabilities.runs_images:
            raise SandboxError(f"trajectory {traj.id!r} needs the docker image {image!r}; the {self.backend.name} "
                               f"backend runs on the host's tools: use sandbox='docker' (or another backend "
                               f"that runs images)")
        return image

    def task_limits(self, traj: Trajectory) -> SandboxLimits | None:
        lim = traj.task.get("limits")
        if not lim:
            return self.limits
        base = self.limits or SandboxLimits()
        return dataclasses.replace(base, **{k: v for k, v in lim.items() if hasattr(base, k)})

    # ------------------------------------------------------------------ sandbox plumbing
    def exec_in(self, box: Sandbox, traj: Trajectory, cmd: str, timeout_s: float | None = None) -> ExecResult:
        """Run one command of `traj`'s task (its env, its per-command limit unless `timeout_s`) and
        count the sandbox time."""
        t0 = time.perf_counter()
        timeout = self.command_timeout(traj) if timeout_s is None else timeout_s
        result = box.exec(cmd, timeout=timeout, env=traj.task.get("env") or None)
        self.costs.sandbox_seconds += time.perf_counter() - t0
        return result

    def load_state(self, traj: Trajectory, k: int) -> SandboxState:
        def prepare(box: Sandbox) -> None:
            self.prepare_task(box, traj)

        def apply(box: Sandbox, action: dict, i: int) -> None:
            self.replay_action(box, traj, action, i)

        # every backend stores the cache key it was given in Snapshot.key: it identifies the state
        snap = self.snapshots.state_at(image=self.task_image(traj), task_key=traj.task_key(),
                                       actions=traj.actions_before(k), workdir=self.workdir(traj),
                                       limits=self.task_limits(traj), prepare=prepare, apply=apply)
        state = SandboxState(traj, k, snap, snap.key)
        if self.mode == "episode":
            state.sandbox = self.backend.fork(snap)
        return state

    def state_key(self, state: SandboxState) -> str:
        return state.key

    def run_in_fork(self, state: SandboxState, cmds: list[str]) -> Outcome:
        """Run `cmds` in order in a fresh fork of the state and measure their effect (see `forked_run`)."""
        with self.forked_run(state, cmds) as (outcome, _box):
            return outcome

    @contextlib.contextmanager
    def forked_run(self, state: SandboxState, cmds: list[str]) -> Iterator[tuple[Outcome, Sandbox]]:
        """Run `cmds` in order in a fresh fork of the state (every command runs; each exit status is
        kept) and measure the effect: file manifest of the state roots, git summary, stdout. Yields
        the outcome and the still-open fork (to read files from); the fork is closed on exit.
        Raises SandboxError when the fork cannot run them (the caller tells who broke it)."""
        if not cmds:
            raise ValueError("forked_run needs at least one command")
        traj = state.traj
        t0 = time.perf_counter()
        box = self.backend.fork(state.snapshot)
        try:
            results = []
            for cmd in cmds:
                results.append(self.exec_in(box, traj, cmd))
                self.costs.rollout_turns += 1
            files, git, commits = measure_files(box, self.state_roots(traj, box))
            last = results[-1]
            outcome = Outcome(last.exit_code, last.timed_out, "".join(r.stdout for r in results), files, git,
                              time.perf_counter() - t0, exit_codes=tuple(r.exit_code for r in results),
                              disk_full=any(getattr(r, "disk_full", False) for r in results), commits=commits)
            yield outcome, box
        finally:
            box.close()

    def sandbox_healthy(self, state: SandboxState) -> bool:
        """Can a fresh fork of the state still run a command? (Tells a sandbox that an action broke
        from a backend that is failing.)"""
        try:
            with self.backend.fork(state.snapshot) as box:
                return box.exec("true", timeout=30).ok
        except Exception:
            log.exception("health probe of the sandbox backend failed")
            return False

    @contextlib.contextmanager
    def box_or_fork(self, state: SandboxState, box: Sandbox | None) -> Iterator[Sandbox]:
        """`box` as it is (the caller owns it), or else a fork of the state, counted as a rollout turn
        (checking a state, e.g. a "done" message's task test, runs in a fork) and closed on exit."""
        if box is not None:
            yield box
            return
        fork = self.backend.fork(state.snapshot)
        self.costs.rollout_turns += 1
        try:
            yield fork
        finally:
            fork.close()

    def run_task_test(self, state: SandboxState, box: Sandbox | None = None) -> bool | None:
        """Run the task's test in `box` (default: a fork of the state). None = could not run (infra)."""
        traj = state.traj
        try:
            with self.box_or_fork(state, box) as b:
                for path, content in (traj.task.get("test_files") or {}).items():
                    b.write_file(path, content)
                res = self.exec_in(b, traj, traj.task["test"],
                                   timeout_s=float(traj.task.get("test_timeout_s", DEFAULT_TEST_TIMEOUT_S)))
            return res.exit_code == 0 and not res.timed_out
        except SandboxError:
            log.exception("task test could not run")
            return None

    def episode_reward(self, state: SandboxState) -> tuple[float, dict]:
        passed = self.run_task_test(state, box=state.sandbox)
        if passed is None:
            return 0.0, {"failure_kind": "sandbox_error", "reason": "the task test could not run"}
        return (1.0 if passed else 0.0), {"success": bool(passed)}

    def close_state(self, state: SandboxState) -> None:
        if state.sandbox is not None:
            state.sandbox.close()
            state.sandbox = None
