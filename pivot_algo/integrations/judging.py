"""Judging completions at their start states, for every trainer integration.

`StateJudge(source)` takes a pivot-mode env (a Gymnasium env or `PivotEnv`) or a
`pivot_algo.distributed.VerifierPool`, and judges a batch of (trajectory id, turn, completion)
triples with one reset per distinct state (in-process) or in parallel (pool).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from pivot_algo.rollout import StartState
from pivot_envs.errors import (
    PivotError,
    ReplayError,
    TrajectoryError,
    TurnOutOfRangeError,
    UnknownTrajectoryError,
)
from pivot_envs.verdict import Verdict

log = logging.getLogger(__name__)


class IntegrationError(PivotError, ValueError):
    """A trainer called the glue with inputs it cannot judge. The message says which column is missing."""


def make_pivot_env(env_id: str, env_kwargs: Mapping[str, Any]) -> Any:
    """A pivot-mode env: a registered Gymnasium id, or `module:Class` of a PivotEnv subclass."""
    from pivot_envs.registration import make_env

    return make_env(env_id, mode="pivot", **env_kwargs)


def completion_text(completion: Any) -> str | dict:
    """TRL/verifiers completions come as text or as a list of chat messages (conversational): the last
    assistant message's content (or the message itself when it carries tool calls)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        last = completion[-1]
        return last if last.get("tool_calls") else (last.get("content") or "")
    raise IntegrationError(f"a completion must be text or a list of chat messages, got {type(completion).__name__}")


def judge_at_state(env: Any, state: StartState, actions: Sequence[Any]) -> list[Verdict]:
    """Reset `env` to `state` and judge `actions` there (one reset for all). A state that cannot be
    rebuilt (sandbox lost, replay failed) masks every sample - an infra failure, not the actions'
    fault; bad input (unknown trajectory, turn out of range) still raises."""
    try:
        env.reset(options={"trajectory": state.trajectory_id, "turn": state.turn})
    except (TrajectoryError, UnknownTrajectoryError, TurnOutOfRangeError):
        raise
    except Exception as e:  # noqa: BLE001 - whatever broke is the sandbox side's: mask it
        kind = "replay_error" if isinstance(e, ReplayError) else "sandbox_error"
        log.warning("reset to %s failed: %s: %s", state, type(e).__name__, e)
        v = Verdict.infra(kind, f"reset to {state.trajectory_id!r} turn {state.turn} failed on pid {os.getpid()}: "
                                f"{type(e).__name__}: {e}")
        return [dataclasses.replace(v) for _ in actions]
    return list(env.unwrapped.judge_actions(list(actions)))


class StateJudge:
    """Verdicts of completions at their (trajectory, turn) states; see the module docstring."""

    def __init__(self, source: Any):
        self.source = source
        self.pool = source if hasattr(source, "judge_many") else None
        self.env: Any = None if self.pool is not None else source
        if self.env is not None and not hasattr(self.env.unwrapped, "judge_actions"):
            raise IntegrationError(f"need a Pivot env (mode='pivot') or a VerifierPool, got {type(source).__name__}")
        self._lock = threading.Lock()  # one env, one state at a time
        self.samples = 0
        self.masked = 0

    def judge(self, trajectory_ids: Sequence[str], turns: Sequence[int], completions: Sequence[Any]) -> list[Verdict]:
        if not (len(trajectory_ids) == len(turns) == len(completions)):
            raise IntegrationError(f"got {len(completions)} completions but {len(trajectory_ids)} trajectory ids and "
                                   f"{len(turns)} turns: each dataset row must carry its 'trajectory_id' and 'turn'")
        groups: dict[StartState, list[int]] = {}
        for i, (tid, k) in enumerate(zip(trajectory_ids, turns)):
            groups.setdefault(StartState(str(tid), int(k)), []).append(i)
        texts = [completion_text(c) for c in completions]
        out: list[Verdict | None] = [None] * len(texts)
        if self.pool is not None:
            jobs = [(state, [texts[i] for i in idx]) for state, idx in groups.items()]
            for (state, idx), verdicts in zip(groups.items(), self.pool.judge_many(jobs)):
                for i, v in zip(idx, verdicts):
                    out[i] = v
        else:
            with self._lock:
                for state, idx in groups.items():
                    for i, v in zip(idx, judge_at_state(self.env, state, [texts[i] for i in idx])):
                        out[i] = v
        verdicts = [v for v in out if v is not None]
        self.samples += len(verdicts)
        self.masked += sum(v.masked for v in verdicts)
        return verdicts
