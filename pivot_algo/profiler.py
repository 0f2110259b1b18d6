"""Offline pivot profiling: which start states give the start policy mixed outcomes.

For every candidate state (every assistant turn of the given trajectories) the frozen start policy
samples K completions; the env's verifier (pivot mode) scores them. A state is a pivot when its
rewards vary (var > 0: some samples right, some wrong) and its mean is below `lambda_diff` (easy
states are dropped). Masked samples (infra failures) are left out of the statistics.

Results go to a JSONL file, one line per state, flushed as each state finishes: an interrupted run
started again with the same file skips the states already there. Each state's samples use a seed
derived from (seed, trajectory id, turn), so the file is the same whether or not the run was split.

Consecutive states are sampled together (up to `states_per_call` per `generate` call): the turns
of a trajectory share the conversation's KV cache, every row shares each decode step, and because
seeding is per (state, sample) the file is the same as with one call per state (tested). A batch's lines are written
when its verdicts are in, so a kill loses at most one batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from pivot_algo.algorithms.base import ConfigError
from pivot_algo.rollout import Rollouts, StartState, stable_seed
from pivot_envs.verdict import Verdict

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ProfileConfig:
    k: int = 8
    """K: samples per candidate state."""
    lambda_diff: float = 0.6
    """Keep a state when its mean reward is below this (drops easy states)."""
    max_new_tokens: int = 256
    """Longest sampled completion (tokens)."""
    temperature: float = 1.0
    """Sampling temperature of the start policy."""
    seed: int = 0
    """Base of the per-state sampling seeds."""
    states_per_call: int = 16
    """Most states sampled in one `generate` call, consecutive in visiting order: the turns of a
    trajectory in one call share the conversation's KV, and all rows of the call share each decode
    step's weight reads. Results do not depend on it (per-state seeds); memory is bounded by the
    policy's own `max_batch_tokens` cap as well."""

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ConfigError(f"profiling needs k >= 2 samples per state to see any variance, got k={self.k}")
        if not 0 < self.lambda_diff <= 1:
            raise ConfigError(f"lambda_diff must be in (0, 1], got {self.lambda_diff}")
        if self.states_per_call < 1:
            raise ConfigError(f"states_per_call must be >= 1, got {self.states_per_call}")
        if self.max_new_tokens < 1 or not self.temperature > 0:
            raise ConfigError(f"need max_new_tokens >= 1 and temperature > 0, got {self.max_new_tokens}, {self.temperature}")


@dataclasses.dataclass
class StateProfile:
    """One line of the profile file."""

    trajectory_id: str
    turn: int
    rewards: list[float]  # unmasked samples only
    masked: int
    tool_calls: int
    messages: int
    mean: float
    var: float

    @property
    def state(self) -> StartState:
        return StartState(self.trajectory_id, self.turn)

    def is_pivot(self, lambda_diff: float) -> bool:
        return self.var > 0 and self.mean < lambda_diff


@dataclasses.dataclass
class ProfileReport:
    candidate_states: int
    pivots_kept: int
    mean_reward: float  # start policy, over every unmasked sample
    samples: int
    masked_samples: int
    verdicts_per_s: float  # verdicts computed (cache misses) per second of judging, this run
    cache_hit_rate: float  # verdict-cache hits / lookups, this run
    message_ratio: float  # plain-message samples / all samples
    tool_call_ratio: float
    resumed_states: int  # states read back from the file instead of sampled
    seconds: float
    pivots: list[StartState] = dataclasses.field(default_factory=list)

    @property
    def pivot_share(self) -> float:
        """Pivots kept / candidate states (0 when nothing was profiled)."""
        return self.pivots_kept / self.candidate_states if self.candidate_states else 0.0

    def summary(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("pivots")
        d["pivot_share"] = self.pivot_share
        return d


def read_profile(path: str | Path) -> list[StateProfile]:
    """The states already profiled in `path` (a truncated last line, from a killed run, is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(StateProfile(**json.loads(line)))
        except (json.JSONDecodeError, TypeError):
            log.warning("skipping an unreadable line of %s (interrupted write?)", path)
    return out


def build_state_profile(state: StartState, verdicts: Sequence[Verdict], is_tool_call: Sequence[bool],
                        is_invalid: Sequence[bool]) -> StateProfile:
    """One state's line: rewards of the unmasked samples, their mean and variance, sample kinds.
    Shared by the in-process profiler and the Ray one (`pivot_algo.distributed`)."""
    rewards = [v.reward for v in verdicts if not v.masked]
    arr = np.array(rewards, dtype=np.float64)
    return StateProfile(state.trajectory_id, state.turn, rewards, masked=sum(v.masked for v in verdicts),
                        tool_calls=sum(is_tool_call),
                        messages=sum(not t and not i for t, i in zip(is_tool_call, is_invalid)),
                        mean=float(arr.mean()) if len(arr) else 0.0,
                        var=float(arr.var()) if len(arr) >= 2 else 0.0)


def append_profile(fh: IO[str], prof: StateProfile) -> None:
    """Write one state's line and flush it, so a killed run keeps every finished state."""
    fh.write(json.dumps(dataclasses.asdict(prof)) + "\n")
    fh.flush()


def summarise_profiles(profiles: Sequence[StateProfile], lambda_diff: float, *, verdicts: float, cache_hits: float,
                       judge_seconds: float, resumed_states: int, seconds: float) -> ProfileReport:
    """The report over `profiles` (`verdicts`, `cache_hits`, `judge_seconds` are this run's)."""
    all_rewards = [r for p in profiles for r in p.rewards]
    n_samples = sum(len(p.rewards) + p.masked for p in profiles)
    pivots = [p.state for p in profiles if p.is_pivot(lambda_diff)]
    return ProfileReport(
        candidate_states=len(profiles), pivots_kept=len(pivots),
        mean_reward=float(np.mean(all_rewards)) if all_rewards else 0.0,
        samples=n_samples, masked_samples=sum(p.masked for p in profiles),
        verdicts_per_s=verdicts / judge_seconds if judge_seconds > 0 else 0.0,
        cache_hit_rate=cache_hits / (cache_hits + verdicts) if cache_hits + verdicts else 0.0,
        message_ratio=sum(p.messages for p in profiles) / max(n_samples, 1),
        tool_call_ratio=sum(p.tool_calls for p in profiles) / max(n_samples, 1),
        resumed_states=resumed_states, seconds=seconds, pivots=pivots)


def open_profile(out_path: str | Path) -> tuple[Path, dict[tuple[str, int], StateProfile]]:
    """Prepare `out_path` for appending (a line cut by a kill is dropped) and return the states already in it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _drop_partial_last_line(out_path)
    return out_path, {(p.trajectory_id, p.turn): p for p in read_profile(out_path)}


def _drop_partial_last_line(path: Path) -> None:
    """A run killed mid-write leaves a line without its newline: cut it, so appends start clean."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def load_pivots(path: str | Path, lambda_diff: float) -> list[StartState]:
    return [p.state for p in read_profile(path) if p.is_pivot(lambda_diff)]


def state_batches(states: Sequence[StartState], states_per_call: int) -> list[list[StartState]]:
    """Consecutive states, at most `states_per_call` per batch, in the given order (trajectory by
    trajectory, turn by turn, so a batch holds whole runs of a trajectory's turns)."""
    return [list(states[i:i + states_per_call]) for i in range(0, len(states), states_per_call)]


def profile(rollouts: Rollouts, states: Sequence[StartState], config: ProfileConfig, out_path: str | Path, *,
            progress: bool = True, max_states: int | None = None) -> ProfileReport:
    """Profile `states` (skipping those already in `out_path`) and return the report over all of them.
    `max_states` stops after that many new states (used to test resumption)."""
    out_path, done = open_profile(out_path)
    resumed = sum((s.trajectory_id, s.turn) in done for s in states)
    todo = [s for s in states if (s.trajectory_id, s.turn) not in done]
    if max_states is not None:
        todo = todo[:max_states]
    costs0 = rollouts.costs()
    judge0 = rollouts.judge_seconds
    t0 = time.perf_counter()
    with out_path.open("a", encoding="utf-8") as fh, \
            tqdm(total=len(todo), desc="profiling", disable=not progress, unit="state") as bar:
        for batch in state_batches(todo, config.states_per_call):
            groups = rollouts.sample(batch, config.k, max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature,
                                     seeds=[stable_seed(config.seed, s.trajectory_id, s.turn) for s in batch])
            for state, group in zip(batch, groups):
                prof = build_state_profile(state, group.verdicts, group.is_tool_call, group.is_invalid)
                append_profile(fh, prof)
                done[(state.trajectory_id, state.turn)] = prof
            bar.update(len(batch))
    seconds = time.perf_counter() - t0
    costs1 = rollouts.costs()
    profiles = [done[(s.trajectory_id, s.turn)] for s in states if (s.trajectory_id, s.turn) in done]
    verdicts = costs1.get("verdicts", 0) - costs0.get("verdicts", 0)
    hits = costs1.get("verdict_cache_hits", 0) - costs0.get("verdict_cache_hits", 0)
    judge_s = rollouts.judge_seconds - judge0
    report = summarise_profiles(profiles, config.lambda_diff, verdicts=verdicts, cache_hits=hits,
                                judge_seconds=judge_s, resumed_states=resumed, seconds=seconds)
    log.info("profile: %s", report.summary())
    return report
