"""Checking a trajectory file before training on it (`pivotrl data validate`, `pivotrl data stats`).

Training on data the env cannot use fails late and quietly: a demonstration that cannot match itself
scores 0 at its turn, so the turn looks like a hard state, not like a broken record. `validate_file`
finds such records up front, in three stages, and reports every failure (not just the first):

1. **load**: each record is read with the importer of its format and checked (required fields,
   roles, every call names a tool in `tools`, arguments are JSON objects; see `trajectory.py`);
2. **domain**: what the domain's env needs from a task (a terminal task has a `test` script; a
   tool-use task with a backend names its classes and initial config);
3. **self-score**: at every turn the demonstration's own action is judged against itself by the
   domain's env and verifier; anything but reward 1 is a failure, with the verifier's reason.
   A masked verdict (the infrastructure failed) is a failure too: the state cannot be used.

`replay=True` adds, where the domain runs episodes (a backend or a sandbox), a whole-episode replay
of the demonstration from turn 0 that must end with the task's own success check passing.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from pivot_envs.errors import PivotError, TrajectoryError
from pivot_envs.trajectory import Trajectory, tool_calls_of


@dataclasses.dataclass
class Failure:
    stage: str  # load | domain | self-score | replay
    trajectory_id: str
    turn: int | None
    reason: str
    line: int | None = None


@dataclasses.dataclass
class ValidationReport:
    source: str
    trajectories: int = 0
    turns_checked: int = 0
    failures: list[Failure] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)  # what was not checked, and why

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self, limit: int = 50) -> str:
        """The failures as a Markdown table (the first `limit`), or one line saying all passed."""
        notes = [f"note: {n}" for n in self.notes]
        if self.ok:
            ok = (f"{self.source}: OK: {self.trajectories} trajectories, the demonstration scores 1 against "
                  f"itself at all {self.turns_checked} turns")
            return "\n".join([ok, *notes])
        head = (f"{self.source}: {len(self.failures)} failure(s) in {self.trajectories} trajectories "
                f"({self.turns_checked} turns self-scored)")
        lines = [head, "",
                 "| stage | trajectory | line | turn | why |", "|---|---|---|---|---|"]
        for f in self.failures[:limit]:
            why = f.reason.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {f.stage} | {f.trajectory_id} | {'-' if f.line is None else f.line} | "
                         f"{'-' if f.turn is None else f.turn} | {why} |")
        if len(self.failures) > limit:
            lines.append(f"| ... | {len(self.failures) - limit} more | | | |")
        return "\n".join(lines + notes)


# ----------------------------------------------------------------------------- domain checks

def _terminal_task(traj: Trajectory) -> list[str]:
    test = traj.task.get("test")
    if not isinstance(test, str) or not test.strip():
        return ["task['test'] is missing or empty: a terminal task needs a test script that says whether it is done"]
    setup = traj.task.get("setup", "")
    return [] if isinstance(setup, str) else [f"task['setup'] must be a shell script string, got {type(setup).__name__}"]


def _tooluse_task(traj: Trajectory) -> list[str]:
    if "involved_classes" not in traj.task:
        return []  # backend-free: judged without execution
    problems = []
    if not isinstance(traj.task["involved_classes"], list) or not traj.task["involved_classes"]:
        problems.append("task['involved_classes'] must be a non-empty list of backend class names")
    if not isinstance(traj.task.get("initial_config", {}), dict):
        problems.append("task['initial_config'] must be an object {class name: scenario}")
    return problems


DOMAIN_CHECKS: dict[str, Callable[[Trajectory], list[str]]] = {"terminal": _terminal_task, "tooluse": _tooluse_task}


def env_id_of(domain: str) -> str:
    """The Gymnasium id of a domain's env (from the domain packages' ENV_SPEC)."""
    from pivot_envs.registration import domains, spec_of_domain

    if domain not in domains():
        raise TrajectoryError(f"no env for domain {domain!r}; known: {sorted(domains())}", field="domain")
    return spec_of_domain(domain).id


# ----------------------------------------------------------------------------- stages

def load_records(path: str | os.PathLike, fmt: str, report: ValidationReport) -> list[tuple[Trajectory, int]]:
    """Every record that loads, with its line; a record that does not is a load failure (all are
    reported, not only the first). A file that cannot be read at all raises TrajectoryError."""
    from pivot_envs.formats import IMPORTERS
    from pivot_envs.formats.common import read_records
    from pivot_envs.trajectory import validate_record

    if fmt not in IMPORTERS:
        raise TrajectoryError(f"unknown input format {fmt!r}; use one of {sorted(IMPORTERS)}")
    out: list[tuple[Trajectory, int]] = []
    seen: dict[str, int] = {}
    for rec, where in read_records(path):
        try:
            traj = validate_record(IMPORTERS[fmt](rec, where), line=where.line, source=where.source)
        except TrajectoryError as e:
            rid = rec.get("id") if isinstance(rec, dict) else None
            report.failures.append(Failure("load", str(rid or "?"), None, str(e).split(": ", 1)[-1], where.line))
            continue
        if traj.id in seen:
            report.failures.append(Failure("load", traj.id, None, f"duplicate id (first at line {seen[traj.id]})",
                                           where.line))
            continue
        seen[traj.id] = where.line
        out.append((traj, where.line))
    return out


def self_score(trajectories: list[tuple[Trajectory, int]], report: ValidationReport,
               env_kwargs: dict[str, Any] | None = None, replay: bool = False, progress: bool = True) -> None:
    """Stage 3 (and the optional replay), one env per domain."""
    import gymnasium as gym
    from tqdm import tqdm

    import pivot_envs  # noqa: F401  (registers the envs)
    from pivot_envs.base_env import pivot_env

    by_domain: dict[str, list[tuple[Trajectory, int]]] = {}
    for traj, line in trajectories:
        by_domain.setdefault(traj.domain, []).append((traj, line))
    bar = tqdm(total=sum(t.num_turns for t, _ in trajectories), desc="self-score", unit="turn", disable=not progress)
    for domain, items in by_domain.items():
        kwargs = {**(env_kwargs or {}), "trajectories": [t for t, _ in items]}
        try:
            env = pivot_env(gym.make(env_id_of(domain), disable_env_checker=True, **kwargs))
        except PivotError as e:
            report.failures.append(Failure("self-score", f"<all {len(items)} {domain} trajectories>", None, str(e)))
            bar.update(sum(t.num_turns for t, _ in items))
            continue
        try:
            for traj, line in items:
                for k in range(traj.num_turns):
                    env.reset(options={"trajectory": traj.id, "turn": k})
                    verdict = env.judge_actions([traj.reference(k)])[0]
                    report.turns_checked += 1
                    bar.update(1)
                    if verdict.masked or verdict.reward != 1.0:
                        why = ("masked (infrastructure): " if verdict.masked else "") + verdict.reason
                        report.failures.append(Failure("self-score", traj.id, k, why, line))
        finally:
            env.close()
        if replay:
            _replay(domain, kwargs, items, report)
    bar.close()


def _replay(domain: str, kwargs: dict[str, Any], items: list[tuple[Trajectory, int]], report: ValidationReport) -> None:
    """Each demonstration as a whole episode from turn 0: the task's own check must pass at the end."""
    import gymnasium as gym

    longest = max(t.num_turns for t, _ in items)
    try:
        env = gym.make(env_id_of(domain), disable_env_checker=True, **{**kwargs, "mode": "episode",
                                                                       "max_turns": longest + 1})
    except PivotError as e:  # e.g. backend-free tool use: nothing runs, so there is no episode to replay
        report.notes.append(f"no episode replay for the {domain} trajectories: {e}")
        return
    try:
        for traj, line in items:
            env.reset(options={"trajectory": traj.id, "turn": 0})
            reward, info = 0.0, dict[str, Any]()
            for k in range(traj.num_turns):
                _, r, terminated, truncated, info = env.step(traj.reference(k))
                reward = float(r)
                if terminated or truncated:
                    break
            if reward != 1.0:
                report.failures.append(Failure("replay", traj.id, None, "the demonstration replayed as an episode "
                                               f"scored {reward}: {info.get('reason', 'it did not finish')}", line))
    finally:
        env.close()


def validate_file(path: str | os.PathLike, fmt: str = "pivotrl", env_kwargs: dict[str, Any] | None = None,
                  replay: bool = False, progress: bool = True) -> ValidationReport:
    """All stages over one file (see the module docstring)."""
    report = ValidationReport(str(path))
    loaded = load_records(path, fmt, report)
    report.trajectories = len(loaded)
    usable = []
    for traj, line in loaded:
        problems = DOMAIN_CHECKS.get(traj.domain, lambda _: [])(traj)
        report.failures.extend(Failure("domain", traj.id, None, p, line) for p in problems)
        if not problems:
            usable.append((traj, line))
    if usable:
        self_score(usable, report, env_kwargs, replay, progress)
    return report


# ----------------------------------------------------------------------------- stats

def stats(trajectories: Iterable[Trajectory]) -> dict[str, Any]:
    """Counts that tell what a file holds: turns by kind, domains, tools and how often each is called."""
    trajs = list(trajectories)
    turns = [t.num_turns for t in trajs]
    kinds: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for t in trajs:
        for k in range(t.num_turns):
            tcs = tool_calls_of(t.reference(k))
            kinds["parallel-call turns" if len(tcs) > 1 else "tool-call turns" if tcs else "message turns"] += 1
            calls.update(c.name for c in tcs)
    return {"trajectories": len(trajs), "domains": dict(Counter(t.domain for t in trajs)),
            "turns": sum(turns), "turns per trajectory (min/mean/max)":
                f"{min(turns, default=0)}/{sum(turns) / max(len(trajs), 1):.1f}/{max(turns, default=0)}",
            "tool-call turns": kinds["tool-call turns"], "parallel-call turns": kinds["parallel-call turns"],
            "message turns": kinds["message turns"],
            "backend-free tool-use trajectories": sum(t.domain == "tooluse" and "involved_classes" not in t.task
                                                      for t in trajs),
            "distinct tools": len({tool["function"]["name"] for t in trajs for tool in t.tools}),
            "calls per tool (top 10)": dict(calls.most_common(10))}
