"""`SandboxedEnv`: the part of a domain env that lives in a sandbox (terminal, SWE, ...).

It owns what every sandboxed domain needs and nothing domain-specific:
- one backend and one snapshot cache per sandbox kind, shared by the envs of the process that are
  open (`shared_sandbox`), so envs made for profiling, training and evaluation reuse each other's
  snapshots; they are reference-counted: when the last env using them closes (or at
  `pivot_envs.close_all()`), the snapshots are released and a backend made by name is closed, so no
  container, volume, mount, cgroup, process or temp dir of the project remains;
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
from pivot_envs.errors import ReplayError, SandboxError, SandboxLostError
from pivot_envs.processes import describe, keeps_processes, split_watched, watched
from pivot_envs.sandbox import SandboxBackend, SandboxLimits, Snapshot, make_backend
from pivot_envs.sandbox.base import ExecResult, Sandbox
from pivot_envs.sandbox.cache import SnapshotCache
from pivot_envs.trajectory import Trajectory, action_hash

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_TEST_TIMEOUT_S = 120.0

_SHARED: dict[str, tuple[SandboxBackend, SnapshotCache]] = {}
_USERS: dict[str, int] = {}  # key of _SHARED -> open envs using it
_SHARED_LOCK = threading.Lock()


def _forget_inherited_sandboxes() -> None:
    """In a forked child (AsyncVectorEnv, multiprocessing), the parent's backends are not ours: their
    snapshot ids and directories would collide with the parent's, and closing them at exit would
    delete the parent's state. Drop them (without closing); the child builds its own on first use."""
    global _SHARED_LOCK
    _SHARED.clear()
    _USERS.clear()
    _SHARED_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_inherited_sandboxes)


def _shared_key(kind: str | SandboxBackend) -> str:
    return kind if isinstance(kind, str) else f"obj:{id(kind)}"


def shared_sandbox(kind: str | SandboxBackend, *, user: bool = False) -> tuple[SandboxBackend, SnapshotCache]:
    """The process-wide backend and snapshot cache for `kind` (a backend name or object). With
    `user`, the caller counts as one more user until it calls `release_shared_sandbox(kind)`."""
    key = _shared_key(kind)
    with _SHARED_LOCK:
        if key not in _SHARED:
            backend = make_backend(kind) if isinstance(kind, str) else kind
            _SHARED[key] = (backend, SnapshotCache(backend))
        if user:
            _USERS[key] = _USERS.get(key, 0) + 1
        return _SHARED[key]


def release_shared_sandbox(kind: str | SandboxBackend) -> None:
    """One user of `kind`'s shared backend is done; the last one releases its snapshots and closes
    a backend made by name (one passed in as an object is its owner's to close). Returns when the
    backend's sandboxes, containers, mounts and processes are gone."""
    key = _shared_key(kind)
    with _SHARED_LOCK:
        left = _USERS.get(key, 0) - 1
        if left > 0:
            _USERS[key] = left
            return
        _USERS.pop(key, None)
        entry = _SHARED.pop(key, None)
    if entry is not None:
        _close_entry(key, *entry)


def _close_entry(key: str, backend: SandboxBackend, cache: SnapshotCache) -> None:
    try:
        cache.clear()
        if not key.startswith("obj:"):  # a backend the caller passed in is the caller's to close
            backend.close()
    except Exception:  # best effort: at exit, or the last env closing
        log.exception("closing sandbox backend %s", key)


@atexit.register
def close_shared_sandboxes() -> None:
    """Release every shared snapshot and backend of this process (`shared_sandbox`): call it when done
    with the envs (their snapshots otherwise live until exit, where this runs too). Backends passed
    in as objects lose their snapshots but stay open: closing them is their owner's job. An env made
    afterwards starts a fresh backend and cache."""
    with _SHARED_LOCK:
        entries = list(_SHARED.items())
        _SHARED.clear()
        _USERS.clear()
    for key, (backend, cache) in entries:
        _close_entry(key, backend, cache)


RESTORE_SNAPSHOT = "snapshot"
RESTORE_REPLAY = "replay"
# (task key, action hash of actions 0..i) -> the processes action i left running: filled while states are
# built (every env of the process shares the snapshot cache, so they share this too).
_LEFT_RUNNING: dict[str, tuple[str, ...]] = {}


class UnfaithfulStateError(ReplayError):
    """A state that needs processes the demonstration left running, on a backend that cannot keep a
    process past its command (local): restoring its files alone would be a different state."""


@dataclasses.dataclass
class SandboxState:
    """The state at turn k: a snapshot (pivot mode) and, in episode mode, a live sandbox forked from it.

    `restore` says how a sandbox of this state is made (`SandboxedEnv.fork_state`): "snapshot" forks
    `snapshot`; "replay" (a demonstration action before turn k left processes running, which no
    snapshot holds) forks `base`, the snapshot before action `replay_from`, and replays actions
    `replay_from`..k-1 live in it.
    """

    traj: Trajectory
    turn: int
    snapshot: Snapshot
    key: str
    sandbox: Sandbox | None = None
    restore: str = RESTORE_SNAPSHOT
    replay_from: int | None = None
    base: Snapshot | None = None

    @property
    def prefix(self) -> list[dict]:
        return self.traj.prefix(self.turn)


class SandboxedEnv(PivotEnv):
    """A `PivotEnv` whose state is a sandbox snapshot (see the module docstring).

    A domain whose demonstrations may leave processes running (a server started in the background)
    sets `checks_processes`: its `replay_action` then accepts `watch=True` and returns what the action
    left running, and states after such an action are restored by live replay (`fork_state`).

    Arguments (besides PivotEnv's): `sandbox` ("docker" | "local" | a backend object), `image`
    (default image for tasks that name none), `limits` (default `SandboxLimits`; a task's
    `"limits"` entry overrides fields), `verdict_workers` (how many of a group's sampled actions
    `judge_actions` runs at once, each in its own fork of the state, sharing the state's reference
    runs; 1 = one after another; None = the domain's default, `verdict_workers` of the class).
    """

    checks_processes = False

    def __init__(self, trajectories: Any = None, *, sandbox: str | SandboxBackend = "docker",
                 image: str | None = None, limits: SandboxLimits | None = None,
                 verdict_workers: int | None = None, **kwargs: Any):
        if verdict_workers is not None:
            if isinstance(verdict_workers, bool) or not isinstance(verdict_workers, int) or verdict_workers < 1:
                raise ValueError(f"verdict_workers must be an int >= 1 (1 = judge one action at a time), "
                                 f"got {verdict_workers!r}")
            self.verdict_workers = verdict_workers
        super().__init__(trajectories, **kwargs)
        self.backend, self.snapshots = shared_sandbox(sandbox, user=True)
        self._sandbox_kind: str | SandboxBackend | None = sandbox
        self.image = image
        self.limits = limits
        self.divergences: list[dict] = []
        # (trajectory id, turn) -> the first turn before it whose action left processes running (None: none)
        self._process_turn: dict[tuple[str, int], int | None] = {}

    # ------------------------------------------------------------------ domain hooks
    def replay_action(self, box: Sandbox, traj: Trajectory, action: dict, i: int, *,
                      watch: bool = False) -> tuple[str, ...] | None:
        """Run the demonstration's action `i` in `box` while rebuilding a state (raise ReplayError
        when it cannot be replayed). With `watch`, return the processes it left running
        (`exec_watched`; None when the domain does not check)."""
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

    def exec_watched(self, box: Sandbox, traj: Trajectory, cmd: str) -> tuple[ExecResult, tuple[str, ...] | None]:
        """`exec_in` that also says which processes `cmd` left running (`pivot_envs.processes`)."""
        res, left = split_watched(self.exec_in(box, traj, watched(cmd)))
        return res, left

    def _snapshot_at(self, traj: Trajectory, k: int, task_key: str, watch: bool) -> Snapshot:
        image = self.task_image(traj)
        actions = traj.actions_before(k)

        def prepare(box: Sandbox) -> None:
            self.prepare_task(box, traj)

        def apply(box: Sandbox, action: dict, i: int) -> None:
            if not watch:
                self.replay_action(box, traj, action, i)
                return
            left = self.replay_action(box, traj, action, i, watch=True)
            _LEFT_RUNNING[f"{task_key}|{action_hash(actions[:i + 1])}"] = tuple(left or ())

        # every backend stores the cache key it was given in Snapshot.key: it identifies the state
        return self.snapshots.state_at(image=image, task_key=task_key, actions=actions, workdir=self.workdir(traj),
                                       limits=self.task_limits(traj), prepare=prepare, apply=apply)

    def first_process_turn(self, traj: Trajectory, k: int, task_key: str) -> int | None:
        """The first turn before `k` whose demonstration action left processes running (None: none).
        From the record's `task["background_processes"]` when it has one (the recorder writes it),
        else from what was seen while the states were built (`_LEFT_RUNNING`); a turn never seen (its
        state came from elsewhere) is checked by replaying 0..k-1 watched in a fresh sandbox, once."""
        recorded = traj.task.get("background_processes")
        if isinstance(recorded, list):
            turns = [int(e["turn"]) for e in recorded if isinstance(e, dict) and e.get("processes")]
            return min((t for t in turns if t < k), default=None)
        actions = traj.actions_before(k)
        keys = [f"{task_key}|{action_hash(actions[:i + 1])}" for i in range(k)]
        if any(key not in _LEFT_RUNNING for key in keys):
            with self.backend.create(self.task_image(traj), workdir=self.workdir(traj),
                                     limits=self.task_limits(traj)) as box:
                self.prepare_task(box, traj)
                for i, action in enumerate(actions):
                    _LEFT_RUNNING[keys[i]] = tuple(self.replay_action(box, traj, action, i, watch=True) or ())
        return next((i for i, key in enumerate(keys) if _LEFT_RUNNING[key]), None)

    def load_state(self, traj: Trajectory, k: int) -> SandboxState:
        task_key = traj.task_key()
        # trajectories recorded with the process check carry its answer; others are checked as built
        watch = self.checks_processes and not isinstance(traj.task.get("background_processes"), list)
        snap = self._snapshot_at(traj, k, task_key, watch)
        state = SandboxState(traj, k, snap, snap.key)
        memo = (traj.id, k)
        if not self.checks_processes:
            pass
        elif memo not in self._process_turn:
            self._process_turn[memo] = self.first_process_turn(traj, k, task_key) if k else None
        first = self._process_turn.get(memo)
        if first is not None:
            left = _LEFT_RUNNING.get(f"{task_key}|{action_hash(traj.actions_before(first + 1))}") or next(
                (tuple(e["processes"]) for e in traj.task.get("background_processes") or [] if e["turn"] == first), ())
            if not keeps_processes(self.backend):
                raise UnfaithfulStateError(
                    f"trajectory {traj.id!r} turn {k}: the demonstration's {describe({first: left})} left processes "
                    f"running, which the state at turn {k} needs; the {self.backend.name} backend ends every process "
                    "when its command returns, so this state cannot be restored here (a snapshot holds files, not "
                    "processes). Use sandbox='docker', where it is restored by replaying the demonstration live.")
            state.restore, state.replay_from = RESTORE_REPLAY, first
            state.base = self._snapshot_at(traj, first, task_key, watch)
            state.key = f"{snap.key}+replay{first}"
        if self.mode == "episode":
            state.sandbox = self.fork_state(state)
            # The next episode will likely start here again: backends with a fork pool prepare one.
            warm_from = state.snapshot if state.restore == RESTORE_SNAPSHOT else state.base
            if warm_from is not None:
                self.backend.warm(warm_from)
        return state

    def fork_state(self, state: SandboxState) -> Sandbox:
        """A fresh sandbox in `state`: a fork of its snapshot, or (restore "replay") a fork of the snapshot
        before the first process-leaving action with actions `replay_from`..k-1 replayed live in it, so
        the processes they start run there (cost: those k - replay_from actions)."""
        if state.restore == RESTORE_SNAPSHOT:
            return self.backend.fork(state.snapshot)
        assert state.base is not None and state.replay_from is not None
        box = self.backend.fork(state.base)
        try:
            actions = state.traj.actions_before(state.turn)
            for i in range(state.replay_from, state.turn):
                self.replay_action(box, state.traj, actions[i], i)
        except BaseException:
            box.close()
            raise
        return box

    def _info(self) -> dict:
        info = super()._info()
        if isinstance(self._state, SandboxState):
            info["restore"] = self._state.restore
        return info

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
        Raises SandboxLostError when the fork could not start or was killed from outside (never the
        commands' fault), SandboxError when it cannot run them otherwise (the caller tells who broke it)."""
        if not cmds:
            raise ValueError("forked_run needs at least one command")
        traj = state.traj
        t0 = time.perf_counter()
        try:
            box = self.fork_state(state)
        except SandboxError as e:  # before any command ran: never the commands' fault
            raise SandboxLostError(f"could not start a fork of the state: {e}") from e
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
        except SandboxError as e:
            if not isinstance(e, SandboxLostError) and box.lost_to_outside():
                raise SandboxLostError(f"the fork was killed from outside: {e}") from e
            raise
        finally:
            box.close(wait=False)  # off the verdict's path; this env's close() waits for it

    def sandbox_healthy(self, state: SandboxState) -> bool:
        """Can a fresh fork of the state still run a command? (Tells a sandbox that an action broke
        from a backend that is failing.)"""
        try:
            with self.fork_state(state) as box:
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
        fork = self.fork_state(state)
        self.costs.rollout_turns += 1
        try:
            yield fork
        finally:
            fork.close(wait=False)

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

    def close(self) -> None:
        """Close this env's sandboxes (returning once they are gone, background removals included);
        the last open env of a shared backend releases it too."""
        try:
            super().close()
            if getattr(self, "backend", None) is not None:  # None when __init__ failed early
                self.backend.flush_removals()
        finally:
            kind, self._sandbox_kind = self._sandbox_kind, None
            if kind is not None:
                release_shared_sandbox(kind)

    def close_state(self, state: SandboxState) -> None:
        if state.sandbox is not None:
            state.sandbox.close(wait=False)  # the previous episode's sandbox: off the reset's path
            state.sandbox = None
