"""Profiled pivots as a Hugging Face `datasets.Dataset`, and back.

One row per profiled state (by default only the pivots):

| column | what |
|---|---|
| `state_id` | `"{trajectory_id}#{turn}"` |
| `trajectory_id`, `turn`, `domain` | the start state |
| `prompt` | the conversation before turn k, OpenAI messages in one fixed shape (`role`, `content`, `tool_calls` with JSON-string `arguments`, `tool_call_id`, `name`) so that Arrow can store them |
| `tools` | the tool schemas, as a JSON string (JSON Schemas differ in shape from tool to tool) |
| `reference` | the demonstration's assistant message at turn k, same shape as a prompt message |
| `k`, `rewards`, `masked`, `mean`, `var`, `tool_call_samples`, `message_samples` | the profile statistics of the start policy |
| `is_pivot`, `lambda_diff` | whether the state passed the pivot filter, and the threshold used |
| `exact` | the prompt, reference and tools exactly as in the trajectory (JSON), for a lossless round trip |

`pivots_from_dataset(ds)` returns `PivotRecord`s whose messages, tools and reference equal the
trajectory's own (from `exact`), so a dataset saved with `save_to_disk` / pushed to a hub and loaded
elsewhere rebuilds the same start states. TRL takes this dataset through
`pivot_algo.integrations.trl.trl_dataset`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pivot_algo.profiler import StateProfile, read_profile
from pivot_algo.rollout import StartState
from pivot_envs.errors import PivotError
from pivot_envs.trajectory import Trajectory, load_trajectories

COLUMNS = ("state_id", "trajectory_id", "turn", "domain", "prompt", "tools", "reference", "k", "rewards", "masked",
           "mean", "var", "tool_call_samples", "message_samples", "is_pivot", "lambda_diff", "exact")


class PivotDatasetError(PivotError, ValueError):
    """A pivots dataset (or what it is built from) is inconsistent. The message says which row or state."""


@dataclasses.dataclass
class PivotRecord:
    """One row of a pivots dataset, decoded."""

    state: StartState
    domain: str
    messages: list[dict]
    tools: list[dict]
    reference: dict
    profile: StateProfile
    is_pivot: bool

    @property
    def state_id(self) -> str:
        return state_id(self.state)


def state_id(state: StartState) -> str:
    return f"{state.trajectory_id}#{state.turn}"


def _wire_message(m: dict) -> dict:
    """A message in the one shape every row shares (Arrow needs a single struct type)."""
    calls = []
    for tc in m.get("tool_calls") or []:
        fn = tc.get("function") or {}
        args = fn.get("arguments", {})
        calls.append({"id": str(tc.get("id") or ""), "type": str(tc.get("type") or "function"),
                      "function": {"name": str(fn.get("name", "")),
                                   "arguments": args if isinstance(args, str) else json.dumps(args)}})
    return {"role": m["role"], "content": m.get("content") or "", "tool_calls": calls,
            "tool_call_id": str(m.get("tool_call_id") or ""), "name": str(m.get("name") or "")}


def _trajectories(source: Any) -> list[Trajectory]:
    if hasattr(source, "unwrapped") and hasattr(source.unwrapped, "trajectories"):
        return list(source.unwrapped.trajectories)
    if hasattr(source, "trajectories") and callable(source.trajectories):  # a VerifierPool
        return list(source.trajectories())
    return load_trajectories(source)


def pivots_to_dataset(profile: str | Path | Sequence[StateProfile], trajectories: Any, *, lambda_diff: float = 0.6,
                      only_pivots: bool = True) -> Any:
    """A `datasets.Dataset` of the profiled states (only pivots unless `only_pivots=False`).

    `profile`: a profile JSONL path (`pivotrl profile` / `profile_with_pool` output) or its rows;
    `trajectories`: what the states refer to (an env, a VerifierPool, a JSONL path, dicts...)."""
    import datasets

    rows = read_profile(profile) if isinstance(profile, (str, Path)) else list(profile)
    by_id = {t.id: t for t in _trajectories(trajectories)}
    out: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for p in rows:
        pivot = p.is_pivot(lambda_diff)
        if only_pivots and not pivot:
            continue
        traj = by_id.get(p.trajectory_id)
        if traj is None:
            raise PivotDatasetError(f"profiled state {p.trajectory_id!r} turn {p.turn} names a trajectory that is not "
                                    f"among the {len(by_id)} given: pass the trajectories the profile was made from")
        traj.check_turn(p.turn)
        prefix, reference = traj.prefix(p.turn), traj.reference(p.turn)
        values = {
            "state_id": state_id(p.state), "trajectory_id": p.trajectory_id, "turn": p.turn, "domain": traj.domain,
            "prompt": [_wire_message(m) for m in prefix], "tools": json.dumps(traj.tools),
            "reference": _wire_message(reference), "k": len(p.rewards) + p.masked, "rewards": list(p.rewards),
            "masked": p.masked, "mean": p.mean, "var": p.var, "tool_call_samples": p.tool_calls,
            "message_samples": p.messages, "is_pivot": pivot, "lambda_diff": lambda_diff,
            "exact": json.dumps({"prompt": prefix, "reference": reference, "tools": traj.tools}),
        }
        for c in COLUMNS:
            out[c].append(values[c])
    return datasets.Dataset.from_dict(out, features=_features())


def _features() -> Any:
    from datasets import Features, Value

    message = {"role": Value("string"), "content": Value("string"),
               "tool_calls": [{"id": Value("string"), "type": Value("string"),
                               "function": {"name": Value("string"), "arguments": Value("string")}}],
               "tool_call_id": Value("string"), "name": Value("string")}
    return Features({
        "state_id": Value("string"), "trajectory_id": Value("string"), "turn": Value("int64"),
        "domain": Value("string"), "prompt": [message], "tools": Value("string"), "reference": message,
        "k": Value("int64"), "rewards": [Value("float64")], "masked": Value("int64"), "mean": Value("float64"),
        "var": Value("float64"), "tool_call_samples": Value("int64"), "message_samples": Value("int64"),
        "is_pivot": Value("bool"), "lambda_diff": Value("float64"), "exact": Value("string"),
    })


def pivots_from_dataset(ds: Any) -> list[PivotRecord]:
    """Decode every row of a pivots dataset (see the module docstring)."""
    missing = [c for c in COLUMNS if c not in ds.column_names]
    if missing:
        raise PivotDatasetError(f"not a pivots dataset: columns {missing} are missing (it has {ds.column_names}); "
                                "build it with pivot_algo.pivots_dataset.pivots_to_dataset")
    records = []
    for i, row in enumerate(ds):
        try:
            exact = json.loads(row["exact"])
        except (TypeError, json.JSONDecodeError) as e:
            raise PivotDatasetError(f"row {i} ({row.get('state_id')!r}): column 'exact' is not JSON: {e}") from e
        state = StartState(row["trajectory_id"], int(row["turn"]))
        prof = StateProfile(row["trajectory_id"], int(row["turn"]), list(row["rewards"]), masked=int(row["masked"]),
                            tool_calls=int(row["tool_call_samples"]), messages=int(row["message_samples"]),
                            mean=float(row["mean"]), var=float(row["var"]))
        records.append(PivotRecord(state, row["domain"], exact["prompt"], exact["tools"], exact["reference"], prof,
                                   bool(row["is_pivot"])))
    return records


def pivot_states(ds: Any) -> list[StartState]:
    """The start states of a pivots dataset (what `Trainer(..., pivots=...)` takes)."""
    return [StartState(t, int(k)) for t, k in zip(ds["trajectory_id"], ds["turn"])]
