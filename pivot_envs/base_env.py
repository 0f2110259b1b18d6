"""`PivotEnv`: the Gymnasium env every domain builds on.

A domain subclass says how to rebuild the state at turn k, how to run tool calls, how to judge an
action, and how to score a finished episode; this base class owns everything else (trajectory
selection, reset-to-turn, the two modes, the observation, cost accounting, verdict caching).

Modes:
- `"pivot"`: one step. The action is judged against the demonstration's action at turn k by the
  domain verifier; reward 1 (equivalent) or 0; the episode ends. Infra failures are masked
  (`info["masked"]`), never scored 0.
- `"episode"`: a normal agent loop from turn k until the agent answers without a tool call (or the
  domain's scripted user has nothing more to say), or `max_turns`. The reward is the task's own check.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, overload

import gymnasium as gym

from pivot_envs.errors import EnvStateError, TrajectoryError, UnknownTrajectoryError
from pivot_envs.parsing import ParsedAction, parse_action
from pivot_envs.spaces import AssistantActionSpace, ConversationSpace
from pivot_envs.trajectory import Trajectory, load_trajectories
from pivot_envs.verdict import Verdict

log = logging.getLogger(__name__)

MODES = ("pivot", "episode")


@dataclasses.dataclass
class CostMeter:
    """What an env has spent. `rollout_turns` counts every action executed in a sandbox or backend
    (verification and replay included); `model_turns` counts actions the agent submitted."""

    resets: int = 0
    model_turns: int = 0
    rollout_turns: int = 0
    replay_turns: int = 0
    verdicts: int = 0
    verdict_cache_hits: int = 0
    sandbox_seconds: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def add(self, other: CostMeter) -> None:
        """Add what `other` counted (a worker thread's meter, see `PivotEnv.judge_actions`)."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


# Worker threads of `PivotEnv.judge_actions` count into a meter of their own (id(env) -> meter), added
# to the env's when the group is judged: `costs.x += 1` from several threads could lose counts.
_WORKER_METERS = threading.local()


class VerdictCache:
    """Verdicts keyed by (state key, reference action, verifier, normalised action): two trajectories
    that share a prefix (same state) but differ in their demonstration, or two verifiers (or one
    verifier with other settings) sharing a cache, never share verdicts. Thread-safe, bounded (FIFO)."""

    def __init__(self, max_entries: int = 100_000):
        self._data: dict[tuple[str, str, str, str], Verdict] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def __deepcopy__(self, memo: dict) -> VerdictCache:
        return self  # shared on purpose (gym.make deep-copies kwargs)

    @staticmethod
    def normalise(action: ParsedAction) -> str:
        calls = [(c.name, json.dumps(c.arguments, sort_keys=True)) for c in action.tool_calls]
        return json.dumps({"c": action.content.strip() if not calls else "", "t": calls, "e": action.error})

    @staticmethod
    def reference_key(reference: dict | None) -> str:
        """The demonstration's action as it matters to a verdict: its text and its calls."""
        if reference is None:
            return ""
        return VerdictCache.normalise(parse_action(reference))

    def key(self, state_key: str, action: ParsedAction, reference: dict | None,
            verifier: str) -> tuple[str, str, str, str]:
        return (state_key, self.reference_key(reference), verifier, self.normalise(action))

    def get(self, state_key: str, action: ParsedAction, reference: dict | None = None,
            verifier: str = "") -> Verdict | None:
        with self._lock:
            v = self._data.get(self.key(state_key, action, reference, verifier))
            if v is None:
                self.misses += 1
            else:
                self.hits += 1
            return v

    def put(self, state_key: str, action: ParsedAction, verdict: Verdict, reference: dict | None = None,
            verifier: str = "") -> None:
        if verdict.masked:  # an infra failure may not repeat: never cache it
            return
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.pop(next(iter(self._data)))
            self._data[self.key(state_key, action, reference, verifier)] = verdict


@dataclasses.dataclass(frozen=True)
class Judgements(Sequence[Verdict]):
    """What `judge_actions` returns: a sequence of verdicts (index, iterate and unpack it as a list),
    with `actions[i]`, the parsed form of the i-th action that `verdicts[i]` judged, so a caller that
    counts tool calls or parse failures reads them here instead of parsing the sample again."""

    verdicts: list[Verdict]
    actions: list[ParsedAction]

    def __len__(self) -> int:
        return len(self.verdicts)

    def __iter__(self) -> Iterator[Verdict]:
        return iter(self.verdicts)

    @overload
    def __getitem__(self, i: int) -> Verdict: ...

    @overload
    def __getitem__(self, i: slice) -> list[Verdict]: ...

    def __getitem__(self, i: int | slice) -> Verdict | list[Verdict]:
        return self.verdicts[i]


class PivotEnv(gym.Env, abc.ABC):
    """Base class of PivotTerminal-v0, PivotToolUse-v0, PivotSWE-v0 (see module docstring).

    Arguments (common to every domain):
        trajectories: JSONL path, list of dicts / Trajectory, or a HF Dataset. None = the domain's
            built-in suite.
        reset_to_turn: default turn k for `reset()` (0-based index of the assistant message).
        trajectory: default trajectory (index or id) for `reset()`; None = drawn with `np_random`.
        mode: "pivot" or "episode".
        parser: tool-call parser name ("hermes") or a callable text -> ParsedAction.
        max_turns: episode-mode limit on agent actions (truncation).
        verdict_cache: share a VerdictCache across envs (None = a private one).

    `verdict_workers` (class attribute; a domain whose `judge` is thread-safe takes it as an argument)
    is how many of a group's actions `judge_actions` judges at once, in threads; 1 = one after another.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}  # noqa: RUF012  (gymnasium declares an instance attribute)
    domain: str = ""
    verdict_workers: int = 1

    def __init__(self, trajectories: Any = None, *, reset_to_turn: int = 0, trajectory: int | str | None = None,
                 mode: str = "pivot", parser: str | Callable[[str], ParsedAction] = "hermes",
                 max_turns: int = 30, verdict_cache: VerdictCache | None = None, render_mode: str | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.trajectories: list[Trajectory] = load_trajectories(
            trajectories if trajectories is not None else self.default_trajectories())
        if not self.trajectories:
            raise TrajectoryError("no trajectories given (empty list or file)")
        for t in self.trajectories:
            if t.domain != self.domain:
                raise TrajectoryError(f"trajectory {t.id!r} has domain {t.domain!r}, but this env is for "
                                      f"{self.domain!r}: use the matching env", field="domain")
        self._by_id = {t.id: i for i, t in enumerate(self.trajectories)}
        self.reset_to_turn = reset_to_turn
        self.default_trajectory = trajectory
        self.mode = mode
        self.parser = parser
        self.max_turns = max_turns
        self.render_mode = render_mode
        self.verdict_cache = verdict_cache if verdict_cache is not None else VerdictCache()
        self._costs = CostMeter()
        self.observation_space = ConversationSpace()
        self.action_space = AssistantActionSpace()
        self._state: Any = None
        self._traj: Trajectory | None = None
        self._turn = 0
        self._messages: list[dict] = []
        self._done = True
        self._agent_turns = 0

    @property
    def costs(self) -> CostMeter:
        """What this env has spent (`CostMeter`). Inside a worker thread of `judge_actions`, that
        thread's own meter (added to the env's when the group is judged)."""
        meters = getattr(_WORKER_METERS, "meters", None)
        if meters:
            meter = meters.get(id(self))
            if meter is not None:
                return meter
        return self._costs

    @costs.setter
    def costs(self, meter: CostMeter) -> None:
        self._costs = meter

    # ------------------------------------------------------------------ domain hooks
    def default_trajectories(self) -> list[Trajectory | dict]:
        """The built-in suite used when no `trajectories=` is given."""
        raise TrajectoryError(f"{type(self).__name__} has no built-in trajectories: pass trajectories=...")

    @abc.abstractmethod
    def load_state(self, traj: Trajectory, k: int) -> Any:
        """Rebuild the environment state right before the demonstration's turn k (replaying 0..k-1)."""

    @abc.abstractmethod
    def state_key(self, state: Any) -> str:
        """A string that identifies the state (for the verdict cache)."""

    @abc.abstractmethod
    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        """Pivot mode: is `action` functionally equivalent to `reference` at `state`?"""

    @abc.abstractmethod
    def execute(self, state: Any, action: ParsedAction) -> list[dict]:
        """Episode mode: run the action's tool calls, return the tool messages to append."""

    def tools_at(self, state: Any) -> list[dict]:
        """The tools the agent may call in `state` (default: all of the trajectory's tools). Domains where
        tools appear mid-conversation (BFCL miss_func) override this."""
        return list(self._live_traj().tools)

    def _live_traj(self) -> Trajectory:
        if self._traj is None:
            raise EnvStateError("call reset() first")
        return self._traj

    def next_user_message(self, state: Any) -> str | None:
        """Episode mode: after a plain assistant message, the scripted user's next message (None = done)."""
        return None

    @abc.abstractmethod
    def episode_reward(self, state: Any) -> tuple[float, dict]:
        """Episode mode: the task's own success check at the end of an episode."""

    def close_state(self, state: Any) -> None:
        """Free what `load_state` holds (sandboxes...)."""

    # ------------------------------------------------------------------ selection
    def trajectory_index(self, which: int | str) -> int:
        if isinstance(which, str):
            if which not in self._by_id:
                raise UnknownTrajectoryError(f"no trajectory with id {which!r} (have {len(self._by_id)}; "
                                             f"e.g. {list(self._by_id)[:3]})")
            return self._by_id[which]
        if isinstance(which, bool) or not isinstance(which, int) or not 0 <= which < len(self.trajectories):
            raise UnknownTrajectoryError(f"trajectory index {which!r} out of range 0..{len(self.trajectories) - 1}")
        return which

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"trajectory", "turn"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; use 'trajectory' and 'turn'")
        which = options.get("trajectory", self.default_trajectory)
        if which is None:
            which = int(self.np_random.integers(len(self.trajectories)))
        traj = self.trajectories[self.trajectory_index(which)]
        k = options.get("turn", self.reset_to_turn)
        traj.check_turn(k)
        self._release()
        t0 = time.perf_counter()
        self._state = self.load_state(traj, k)
        self.costs.resets += 1
        self._traj, self._turn = traj, k
        self._messages = traj.prefix(k)
        self._done = False
        self._agent_turns = 0
        info = self._info()
        info["reset_seconds"] = time.perf_counter() - t0
        return self._obs(), info

    def step(self, action: str | dict | ParsedAction):
        if self._traj is None:
            raise EnvStateError("call reset() before step()")
        if self._done:
            raise EnvStateError("the episode is over: call reset() before step()")
        parsed = parse_action(action, self.parser, self.tools_at(self._state))
        self.costs.model_turns += 1
        obs, reward, terminated, truncated, info = (self._pivot_step if self.mode == "pivot" else self._episode_step)(parsed)
        info["action"] = parsed  # the action as parsed, so callers need not parse it again
        return obs, reward, terminated, truncated, info

    def _pivot_step(self, parsed: ParsedAction):
        reference = self._live_traj().reference(self._turn)
        verdict = self.judge_cached(self._state, parsed, reference)
        self._messages.append(parsed.to_message())
        self._done = True
        info = self._info()
        info.update(verdict=verdict, reason=verdict.reason, failure_kind=verdict.failure_kind,
                    masked=verdict.masked, action_is_message=parsed.is_message,
                    reference_is_message=not reference.get("tool_calls"))
        return self._obs(), float(verdict.reward), True, False, info

    def judge_actions(self, actions: Sequence[str | dict | ParsedAction]) -> Judgements:
        """Pivot mode, batched: judge G sampled actions at the current state without G resets.
        Same verdicts as G times `reset(same options)` + `step(action)`; the episode stays open.
        The result is the verdicts in order, carrying the parsed actions (`Judgements.actions`).

        With `verdict_workers` > 1 the group's distinct actions are judged in that many threads at
        once (each in its own fork, the state's reference runs shared through the verifier); an
        action that repeats an earlier one is then judged after them, through the verdict cache,
        so the verdicts, their order and the costs are those of judging one after another."""
        if self._traj is None:
            raise EnvStateError("call reset() before judge_actions()")
        reference = self._traj.reference(self._turn)
        tools = self.tools_at(self._state)
        parsed = [parse_action(a, self.parser, tools) for a in actions]
        self.costs.model_turns += len(parsed)
        verdicts: list[Verdict | None] = [None] * len(parsed)
        firsts: dict[str, int] = {}
        for i, p in enumerate(parsed):
            firsts.setdefault(VerdictCache.normalise(p), i)
        workers = min(self.verdict_workers, len(firsts))
        if workers > 1:
            state = self._state
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verdict") as pool:
                done = list(pool.map(lambda i: self._judge_counted(state, parsed[i], reference), firsts.values()))
            for i, (verdict, meter) in zip(firsts.values(), done):
                verdicts[i] = verdict
                self.costs.add(meter)
        for i, p in enumerate(parsed):
            if verdicts[i] is None:  # sequential, or a repeat (a cache hit unless its first was masked)
                verdicts[i] = self.judge_cached(self._state, p, reference)
        return Judgements([v for v in verdicts if v is not None], parsed)

    def _judge_counted(self, state: Any, parsed: ParsedAction, reference: dict) -> tuple[Verdict, CostMeter]:
        """`judge_cached` in a worker thread, counting into a meter of its own (returned)."""
        meter = CostMeter()
        _WORKER_METERS.meters = {id(self): meter}
        try:
            return self.judge_cached(state, parsed, reference), meter
        finally:
            _WORKER_METERS.meters = None

    def verifier_key(self) -> str:
        """Names the verifier and its settings, for the verdict cache key. Default: the env's
        `verifier` attribute's `config_key` (or its class and `name`)."""
        verifier = getattr(self, "verifier", None)
        if verifier is None:
            return type(self).__name__
        return getattr(verifier, "config_key", None) or f"{type(verifier).__qualname__}:{getattr(verifier, 'name', '')}"

    def judge_cached(self, state: Any, parsed: ParsedAction, reference: dict) -> Verdict:
        """`judge` behind the verdict cache (key: state key, reference, verifier, normalised action)."""
        key = self.state_key(state)
        verifier = self.verifier_key()
        cached = self.verdict_cache.get(key, parsed, reference, verifier)
        if cached is not None:
            self.costs.verdict_cache_hits += 1
            return cached
        try:
            verdict = self.judge(state, parsed, reference)
        except Exception as e:  # a verifier bug or infra crash must not kill a training run
            log.exception("verifier failed")
            verdict = Verdict.infra("verifier_error", f"verifier raised {type(e).__name__}: {e}")
        self.costs.verdicts += 1
        self.verdict_cache.put(key, parsed, verdict, reference, verifier)
        return verdict

    def _episode_step(self, parsed: ParsedAction):
        self._agent_turns += 1
        self._messages.append(parsed.to_message())
        finished = False
        info_extra: dict[str, Any] = {}
        if parsed.error is not None:
            self._messages.append({"role": "user", "content": f"Your last message could not be used: {parsed.error}. "
                                                              "Call a tool with <tool_call>{...}</tool_call> or answer."})
        elif parsed.tool_calls:
            try:
                self._messages.extend(self.execute(self._state, parsed))
            except Exception as e:
                log.exception("tool execution failed")
                self._done = True
                info = self._info()
                info.update(failure_kind="sandbox_error", masked=True, reason=f"{type(e).__name__}: {e}")
                return self._obs(), 0.0, False, True, info
        else:
            nxt = self.next_user_message(self._state)
            if nxt is None:
                finished = True
            else:
                self._messages.append({"role": "user", "content": nxt})
        truncated = not finished and self._agent_turns >= self.max_turns
        reward = 0.0
        if finished or truncated:
            reward, info_extra = self.episode_reward(self._state)
            self._done = True
        info = self._info()
        info.update(info_extra)
        info.setdefault("masked", info.get("failure_kind") is not None)
        return self._obs(), float(reward), finished, truncated, info

    def _obs(self) -> dict:
        return {"messages": [dict(m) for m in self._messages], "tools": self.tools_at(self._state)}

    def _info(self) -> dict:
        # Costs are cumulative (read them from `env.costs`); in info they would make two identical
        # seeded steps differ, which Gymnasium's determinism check rightly rejects.
        traj = self._live_traj()
        return {"trajectory_id": traj.id, "turn": self._turn, "num_turns": traj.num_turns,
                "reference": traj.reference(self._turn), "mode": self.mode,
                "agent_turns": self._agent_turns}

    def render(self):
        if self.render_mode != "ansi" or self._traj is None:
            return None
        lines = [f"[{self._traj.id} turn {self._turn}/{self._traj.num_turns}]"]
        for m in self._messages[-6:]:
            body = m.get("content") or json.dumps(m.get("tool_calls"))
            lines.append(f"{m['role']:>9}: {body[:200]}")
        return "\n".join(lines)

    def _release(self) -> None:
        if self._state is not None:
            try:
                self.close_state(self._state)
            finally:
                self._state = None

    def close(self):
        self._release()
        self._traj = None
        super().close()

    # ------------------------------------------------------------------ TRL-style reward function
    def reward_fn(self) -> Callable[..., list[float | None]]:
        """A TRL-style reward callable `(prompts, completions, trajectory_id, turn, **_) -> [float | None]`:
        each completion is judged at its (trajectory, turn) state; masked verdicts give None."""

        def reward(prompts: Sequence[Any], completions: Sequence[str], trajectory_id: Sequence[str],
                   turn: Sequence[int], **_: Any) -> list[float | None]:
            out: list[float | None] = []
            for comp, tid, k in zip(completions, trajectory_id, turn):
                self.reset(options={"trajectory": tid, "turn": int(k)})
                _, r, _, _, info = self.step(comp if isinstance(comp, str) else comp[-1]["content"])
                out.append(None if info["masked"] else r)
            return out

        return reward


def pivot_env(env: gym.Env) -> PivotEnv:
    """The `PivotEnv` inside the wrappers `gym.make` adds (typed, for `judge_actions`, `costs`, ...)."""
    core = env.unwrapped
    if not isinstance(core, PivotEnv):
        raise TypeError(f"{type(core).__name__} is not a PivotEnv")
    return core
