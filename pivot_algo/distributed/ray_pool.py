"""A Ray pool of verifier actors, and pivot profiling over it.

Each actor builds one pivot-mode env (`gym.make(env_id, mode="pivot", **env_kwargs)`) inside its own
process, so its sandboxes, snapshot cache and verdict cache live on the node that runs it. The
driver sends jobs - (start state, K sampled actions) - and gets verdicts back; an actor resets once
per job (`judge_actions`: one reset for the K samples).

Failures are never scored 0:
- an actor that dies (process killed, node lost) fails its in-flight jobs with `RayActorError`: the
  pool starts a replacement and re-sends those jobs, preferring another actor;
- a masked verdict (a lost container, a sandbox error: `failure_kind` set) is re-judged on another
  actor, up to `max_retries` times; an actor that returns masked verdicts `max_actor_failures` times
  in a row is replaced (its sandbox backend is presumed broken);
- what is still failing after the retries stays masked (`failure_kind`, or "actor_lost" when the
  actors kept dying), so the sample is left out of the statistics, never counted as wrong.

`profile_with_pool` is the profiler of `pivot_algo.profiler` with the judging farmed out: the driver
samples actions (a policy, or a fixed table for verification-bound benchmarks) while the actors
judge earlier states, and each finished state is appended to the same JSONL format as soon as it
is done - so a driver that is killed resumes from the file without redoing finished states.

On a cluster: start Ray there (`ray start --head` on one node, `ray start --address=HEAD:6379` on
the others) and give the pool `address="auto"` (or the head's address); each actor takes
`num_cpus_per_actor` CPUs and Ray places actors across the nodes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from pivot_algo.integrations.judging import judge_at_state, make_pivot_env
from pivot_algo.profiler import (
    ProfileConfig,
    ProfileReport,
    append_profile,
    build_state_profile,
    open_profile,
    summarise_profiles,
)
from pivot_algo.rollout import StartState, stable_seed
from pivot_envs.errors import (
    PivotError,
)
from pivot_envs.parsing import parse_action, render_bash_call
from pivot_envs.trajectory import Trajectory, load_trajectories
from pivot_envs.verdict import Verdict

log = logging.getLogger(__name__)

ACTOR_LOST = "actor_lost"
"""failure_kind of a sample whose actor died on every attempt (masked, like every infra failure)."""


class RayUnavailableError(PivotError, ImportError):
    """Ray is not installed (it is the optional extra `ray`)."""


class PoolError(PivotError, RuntimeError):
    """The pool cannot do what was asked (no actor could start, a job raised a non-infra error)."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError("the verifier pool needs Ray: pip install 'pivotrl[ray]' (or pip install ray)") from e
    return ray


class VerifierWorker:
    """What one actor runs: a pivot-mode env built in the actor's process."""

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any]):
        self.env = make_pivot_env(env_id, dict(env_kwargs))

    def ping(self) -> int:
        return os.getpid()

    def trajectories(self) -> list[dict]:
        return [t.to_dict() for t in self.env.unwrapped.trajectories]

    def judge(self, trajectory_id: str, turn: int, actions: Sequence[Any]) -> list[dict]:
        """Verdicts (as dicts) of `actions` at (trajectory, turn). A state that cannot be rebuilt here
        (sandbox or replay failure) masks every sample, so the pool can retry it elsewhere."""
        return [v.to_dict() for v in judge_at_state(self.env, StartState(trajectory_id, int(turn)), actions)]

    def costs(self) -> dict[str, float]:
        return dict(self.env.unwrapped.costs.as_dict())

    def lose_sandboxes(self) -> None:
        """Fault injection (tests, benchmarks): close this actor's sandbox backend, as when a node loses
        its containers. Every later verdict here is an infra failure until the actor is replaced."""
        self.env.unwrapped.backend.close()

    def close(self) -> None:
        self.env.close()


@dataclasses.dataclass
class PoolStats:
    jobs: int = 0
    """Jobs (state + actions) submitted."""
    samples: int = 0
    """Actions submitted."""
    retried_samples: int = 0
    """Samples sent again after an actor died or returned a masked verdict."""
    recovered_samples: int = 0
    """Retried samples that then got an unmasked verdict."""
    masked_samples: int = 0
    """Samples still masked after every retry (left out of statistics, never scored 0)."""
    actor_deaths: int = 0
    actors_replaced: int = 0
    """Replacements started (after a death, or after repeated infra failures)."""


@dataclasses.dataclass
class _Job:
    job_id: int
    state: StartState
    actions: list[Any]  # model text or assistant-message dicts
    verdicts: list[Verdict | None]
    attempts: list[int]
    avoid: set[int] = dataclasses.field(default_factory=set)  # actor slots that failed this job

    @property
    def done(self) -> bool:
        return all(v is not None for v in self.verdicts)


@dataclasses.dataclass
class _Slot:
    actor: Any
    generation: int = 0
    inflight: int = 0
    infra_streak: int = 0  # consecutive results with a masked verdict


class VerifierPool:
    """`num_actors` Ray actors, each with its own pivot-mode env; see the module docstring.

    `address`: None starts (or reuses) a local Ray instance, "auto" or "HOST:PORT" joins a cluster.
    `max_pending_per_actor`: jobs queued on one actor at once (2 keeps it busy while a result travels).
    """

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any] | None = None, *, num_actors: int = 2,
                 address: str | None = None, num_cpus_per_actor: float = 1.0, max_retries: int = 2,
                 max_actor_failures: int = 2, max_pending_per_actor: int = 2,
                 actor_options: Mapping[str, Any] | None = None, ray_init_kwargs: Mapping[str, Any] | None = None):
        if num_actors < 1:
            raise PoolError(f"num_actors must be >= 1, got {num_actors}")
        if max_retries < 0 or max_actor_failures < 1 or max_pending_per_actor < 1:
            raise PoolError(f"need max_retries >= 0, max_actor_failures >= 1, max_pending_per_actor >= 1; got "
                            f"{max_retries}, {max_actor_failures}, {max_pending_per_actor}")
        ray = self._ray = _ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, **dict(ray_init_kwargs or {}))
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.max_retries = max_retries
        self.max_actor_failures = max_actor_failures
        self.max_pending_per_actor = max_pending_per_actor
        options = {"num_cpus": num_cpus_per_actor, "max_restarts": 0, **dict(actor_options or {})}
        self._actor_cls = ray.remote(VerifierWorker).options(**options)
        self.stats = PoolStats()
        self._slots = [_Slot(self._spawn()) for _ in range(num_actors)]
        self._inflight: dict[Any, tuple[int, int, _Job, list[int]]] = {}
        self._queue: collections.deque[tuple[_Job, list[int]]] = collections.deque()
        self._jobs: dict[int, _Job] = {}
        self._finished: collections.deque[_Job] = collections.deque()
        self._next_id = 0
        self._trajectories: list[Trajectory] | None = None
        self._dead_costs: dict[str, float] = {}
        try:
            ray.get([s.actor.ping.remote() for s in self._slots])
        except Exception as e:
            self.close()
            raise PoolError(f"the verifier actors could not build {env_id!r} with {self.env_kwargs}: {e}") from e

    # ------------------------------------------------------------------ actors
    def _spawn(self) -> Any:
        return self._actor_cls.remote(self.env_id, self.env_kwargs)

    @property
    def num_actors(self) -> int:
        return len(self._slots)

    def _replace(self, i: int, why: str) -> None:
        slot = self._slots[i]
        log.warning("replacing verifier actor %d: %s", i, why)
        self._kill(slot.actor)
        slot.actor = self._spawn()
        slot.generation += 1
        slot.inflight = 0
        slot.infra_streak = 0
        self.stats.actors_replaced += 1

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except (ValueError, self._ray.exceptions.RayError) as e:  # already gone
            log.debug("killing a verifier actor: %s", e)

    def actor_pids(self) -> list[int]:
        return list(self._ray.get([s.actor.ping.remote() for s in self._slots]))

    def kill_actor(self, i: int) -> None:
        """Kill actor `i`'s process (fault injection: a lost node). Its in-flight jobs are re-sent."""
        self._ray.kill(self._slots[i].actor, no_restart=True)

    def lose_sandboxes(self, i: int) -> None:
        """Fault injection: actor `i` loses its sandbox backend (see `VerifierWorker.lose_sandboxes`)."""
        self._ray.get(self._slots[i].actor.lose_sandboxes.remote())

    def trajectories(self) -> list[Trajectory]:
        """The actors' trajectories (read once from actor 0): the driver needs no sandbox of its own."""
        if self._trajectories is None:
            self._trajectories = load_trajectories(self._ray.get(self._slots[0].actor.trajectories.remote()))
        return self._trajectories

    def costs(self) -> dict[str, float]:
        """The live actors' env cost meters, summed (a dead actor's meter is lost with it)."""
        total: dict[str, float] = {}
        for ref in [s.actor.costs.remote() for s in self._slots]:
            try:
                c = self._ray.get(ref)
            except self._ray.exceptions.RayActorError:  # died since its last job: its meter is gone
                continue
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
        return total

    # ------------------------------------------------------------------ jobs
    @property
    def pending(self) -> int:
        """Jobs submitted and not yet returned by `next_finished`."""
        return len(self._jobs)

    def submit(self, state: StartState, actions: Sequence[Any]) -> int:
        """Queue a job: judge `actions` at `state`. Returns its id (see `next_finished`)."""
        job = _Job(self._next_id, state, list(actions), [None] * len(actions), [0] * len(actions))
        self._next_id += 1
        self._jobs[job.job_id] = job
        self.stats.jobs += 1
        self.stats.samples += len(actions)
        if not actions:
            self._finished.append(job)
        else:
            self._queue.append((job, list(range(len(actions)))))
            self._dispatch()
        return job.job_id

    def _pick_slot(self, job: _Job) -> int | None:
        free = [i for i, s in enumerate(self._slots) if s.inflight < self.max_pending_per_actor]
        if not free:
            return None
        preferred = [i for i in free if i not in job.avoid] or free
        return min(preferred, key=lambda i: self._slots[i].inflight)

    def _dispatch(self) -> None:
        while self._queue:
            job, idx = self._queue[0]
            i = self._pick_slot(job)
            if i is None:
                return
            self._queue.popleft()
            slot = self._slots[i]
            ref = slot.actor.judge.remote(job.state.trajectory_id, job.state.turn, [job.actions[j] for j in idx])
            self._inflight[ref] = (i, slot.generation, job, idx)
            slot.inflight += 1

    def _retry_or_give_up(self, job: _Job, idx: list[int], slot_i: int, failed: Callable[[int], Verdict]) -> None:
        again = []
        for j in idx:
            job.attempts[j] += 1
            if job.attempts[j] <= self.max_retries:
                again.append(j)
            else:
                job.verdicts[j] = failed(j)
                self.stats.masked_samples += 1
        if again:
            job.avoid.add(slot_i)
            self.stats.retried_samples += len(again)
            self._queue.append((job, again))

    def _handle(self, ref: Any) -> None:
        ray = self._ray
        slot_i, generation, job, idx = self._inflight.pop(ref)
        slot = self._slots[slot_i]
        current = slot.generation == generation
        if current:
            slot.inflight -= 1
        try:
            raw = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            if current:
                self.stats.actor_deaths += 1
                self._replace(slot_i, f"it died ({type(e).__name__})")
            self._retry_or_give_up(job, idx, slot_i, lambda j: Verdict.infra(
                ACTOR_LOST, f"the verifier actor died on each of {self.max_retries + 1} attempts"))
            return
        except ray.exceptions.RayTaskError as e:  # the env raised: bad input, not infrastructure
            raise PoolError(f"judging {job.state} raised inside the actor: {e}") from e
        verdicts = [Verdict(**d) for d in raw]
        masked = [j for j, v in zip(idx, verdicts) if v.masked]
        by_index = dict(zip(idx, verdicts))
        for j, v in by_index.items():
            if not v.masked:
                if job.attempts[j] > 0:
                    self.stats.recovered_samples += 1
                job.verdicts[j] = v
        if masked:
            self._retry_or_give_up(job, masked, slot_i, lambda j: by_index[j])
            if current:
                slot.infra_streak += 1
                if slot.infra_streak >= self.max_actor_failures:
                    self._replace(slot_i, f"{slot.infra_streak} results in a row had infra failures")
        elif current:
            slot.infra_streak = 0
        if job.done:
            self._finished.append(job)

    def next_finished(self, timeout: float | None = None) -> tuple[int, StartState, list[Verdict]] | None:
        """Wait for the next finished job: (job id, state, verdicts in action order); None on timeout
        or when nothing is pending."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished:
            if not self._inflight and not self._queue:
                return None
            self._dispatch()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = self._ray.wait(list(self._inflight), num_returns=1, timeout=left)
            if not ready:
                return None
            for ref in ready:
                self._handle(ref)
            self._dispatch()
        job = self._finished.popleft()
        del self._jobs[job.job_id]
        return job.job_id, job.state, [v for v in job.verdicts if v is not None]

    def judge_many(self, jobs: Iterable[tuple[StartState, Sequence[Any]]]) -> list[list[Verdict]]:
        """Judge every (state, actions) job in parallel; verdicts in input order."""
        ids = [self.submit(s, a) for s, a in jobs]
        out: dict[int, list[Verdict]] = {}
        while len(out) < len(ids):
            got = self.next_finished()
            if got is None:
                raise PoolError("the pool has nothing in flight but jobs are missing (submitted elsewhere?)")
            out[got[0]] = got[2]
        return [out[i] for i in ids]

    def judge(self, state: StartState, actions: Sequence[Any]) -> list[Verdict]:
        return self.judge_many([(state, actions)])[0]

    def close(self) -> None:
        for s in getattr(self, "_slots", []):
            self._kill(s.actor)
        self._slots = []
        if getattr(self, "_owns_ray", False):
            self._ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------- profiling over the pool

class PolicyActions:
    """K completions per state from `policy`, seeded per state exactly as `pivot_algo.profiler.profile`
    seeds them, so both profilers write the same file."""

    def __init__(self, policy: Any, trajectories: Sequence[Trajectory], config: ProfileConfig):
        self.policy = policy
        self.config = config
        self._by_id = {t.id: t for t in trajectories}

    def __call__(self, state: StartState) -> list[str]:
        traj = self._by_id[state.trajectory_id]
        prompt = self.policy.prompt_ids(traj.prefix(state.turn), traj.tools)
        (group,) = self.policy.generate([prompt], self.config.k, max_new_tokens=self.config.max_new_tokens,
                                        temperature=self.config.temperature,
                                        seed=stable_seed(self.config.seed, state.trajectory_id, state.turn))
        return [c.text for c in group]


class FixedActions:
    """A fixed list of actions per state: `table[state]`, or `table(state)`. For verification-bound
    runs (benchmarks) where sampling must not be the bottleneck."""

    def __init__(self, table: Mapping[StartState, Sequence[Any]] | Callable[[StartState], Sequence[Any]]):
        self.table = table

    def __call__(self, state: StartState) -> list[Any]:
        return list(self.table(state) if callable(self.table) else self.table[state])

    @classmethod
    def demonstration_variants(cls, trajectories: Sequence[Trajectory]) -> FixedActions:
        """Four actions per state that all need the sandbox to judge: the demonstration itself, a
        different command (`ls -la`), the demonstration's command with extra output, and a bare "Done."
        message (judged by running the task's test). Verdicts are deterministic, so runs compare."""
        by_id = {t.id: t for t in trajectories}

        def variants(state: StartState) -> list[Any]:
            ref = by_id[state.trajectory_id].reference(state.turn)
            out: list[Any] = [ref, render_bash_call("ls -la")]
            calls = ref.get("tool_calls") or []
            if calls:
                args = calls[0]["function"]["arguments"]
                command = (json.loads(args) if isinstance(args, str) else args).get("command", "true")
                out.append(render_bash_call(f"{command}\necho variant"))
            else:
                out.append(render_bash_call("echo variant"))
            out.append("Done.")
            return out

        return cls(variants)


def profile_with_pool(pool: VerifierPool, states: Sequence[StartState], config: ProfileConfig, out_path: str | Path,
                      *, actions: Callable[[StartState], Sequence[Any]], parser: str = "hermes",
                      max_pending: int | None = None, max_states: int | None = None) -> ProfileReport:
    """Profile `states` (skipping those already in `out_path`) with `actions(state)` judged by `pool`.

    Lines are appended as states finish (in completion order; the file is keyed by state, so the
    order does not matter). `max_pending` bounds the jobs in flight (default: 2 per actor + 1, so
    the driver samples the next state while the actors judge). Returns the report over all `states`
    present in the file."""
    out_path, done = open_profile(out_path)
    resumed = sum((s.trajectory_id, s.turn) in done for s in states)
    todo = [s for s in states if (s.trajectory_id, s.turn) not in done]
    if max_states is not None:
        todo = todo[:max_states]
    by_id = {t.id: t for t in pool.trajectories()}
    limit = max_pending or pool.num_actors * pool.max_pending_per_actor + 1
    costs0 = pool.costs()
    t0 = time.perf_counter()
    sent: dict[int, list[Any]] = {}
    upcoming = iter(todo)
    with out_path.open("a", encoding="utf-8") as fh:
        exhausted = False
        while True:
            while not exhausted and pool.pending < limit:
                state = next(upcoming, None)
                if state is None:
                    exhausted = True
                    break
                acts = list(actions(state))
                sent[pool.submit(state, acts)] = acts
            got = pool.next_finished()
            if got is None:
                break
            job_id, state, verdicts = got
            acts = sent.pop(job_id)
            tools = by_id[state.trajectory_id].tools
            parsed = [parse_action(a, parser, list(tools)) for a in acts]
            prof = build_state_profile(state, verdicts, [bool(p.tool_calls) for p in parsed],
                                       [p.error is not None for p in parsed])
            append_profile(fh, prof)
            done[(state.trajectory_id, state.turn)] = prof
    seconds = time.perf_counter() - t0
    costs1 = pool.costs()
    profiles = [done[(s.trajectory_id, s.turn)] for s in states if (s.trajectory_id, s.turn) in done]
    verdicts_n = max(0.0, costs1.get("verdicts", 0) - costs0.get("verdicts", 0))
    hits = max(0.0, costs1.get("verdict_cache_hits", 0) - costs0.get("verdict_cache_hits", 0))
    report = summarise_profiles(profiles, config.lambda_diff, verdicts=verdicts_n, cache_hits=hits,
                                judge_seconds=seconds, resumed_states=resumed, seconds=seconds)
    log.info("profile (ray pool, %d actors): %s; pool %s", pool.num_actors, report.summary(), pool.stats)
    return report
