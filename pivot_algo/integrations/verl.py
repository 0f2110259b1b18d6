"""veRL glue: a `compute_score` reward function with veRL's documented signature, and pivots as
veRL's RL dataset rows.

veRL (custom reward function): point `custom_reward_function.path` at this file's module and
`custom_reward_function.name=compute_score`; its reward manager then calls, per response,

    compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)

with the row's `data_source`, the decoded response, `reward_model.ground_truth` and `extra_info`.
`verl_dataset(pivots, env_id, env_kwargs)` builds those rows (write them with `.to_parquet(path)`):
`extra_info` carries the state (`trajectory_id`, `turn`) and how to build the pivot-mode env that
judges it (`env_id`, `env_kwargs`); each reward worker builds that env once, on first use.

Returns `{"score": 1.0 | 0.0, "acc": ...}` (veRL uses "score" as the reward and logs the rest).
veRL has no way to drop a sample from a reward function, so an infrastructure failure (a masked
verdict) is first re-judged `retries` times from a fresh reset, and if it is still masked,
`InfraFailureError` is raised: the step fails loudly instead of training on a reward of 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pivot_algo.integrations.judging import IntegrationError, StateJudge, make_pivot_env
from pivot_algo.pivots_dataset import pivots_from_dataset
from pivot_envs.errors import PivotError
from pivot_envs.parsing import render_tool_call

DATA_SOURCE_PREFIX = "pivotrl/"

_REGISTERED: dict[str, StateJudge] = {}
_BUILT: dict[str, StateJudge] = {}


class InfraFailureError(PivotError, RuntimeError):
    """The verifier kept failing for infrastructure reasons (masked) at one state; nothing was scored."""


def register_judge(name: str, source: Any) -> None:
    """Judge rows whose `extra_info["judge"] == name` with `source` (a pivot-mode env or a VerifierPool
    already built in this process) instead of building an env from `env_id` / `env_kwargs`."""
    _REGISTERED[name] = StateJudge(source)


def _judge_for(extra: Mapping[str, Any]) -> StateJudge:
    name = extra.get("judge")
    if name is not None:
        if name not in _REGISTERED:
            raise IntegrationError(f"extra_info names judge {name!r}, but only {sorted(_REGISTERED)} are registered in "
                                   "this process: call pivot_algo.integrations.verl.register_judge(name, env) first")
        return _REGISTERED[name]
    env_id = extra.get("env_id")
    if not env_id:
        raise IntegrationError("extra_info needs 'env_id' (and optionally 'env_kwargs') or a registered 'judge': build "
                               "the rows with pivot_algo.integrations.verl.verl_dataset")
    kwargs = extra.get("env_kwargs") or {}
    if isinstance(kwargs, str):
        kwargs = json.loads(kwargs)
    key = json.dumps({"env_id": env_id, "env_kwargs": kwargs}, sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = StateJudge(make_pivot_env(str(env_id), kwargs))
    return _BUILT[key]


def compute_score(data_source: str, solution_str: str, ground_truth: str | None = None,
                  extra_info: Mapping[str, Any] | None = None, *, retries: int = 2) -> dict[str, float]:
    """veRL reward: is `solution_str` equivalent to the demonstration at the row's state? See the module
    docstring. `ground_truth` (the demonstration's action, as JSON) is informational: the verifier
    reads the reference from the trajectory itself."""
    extra = dict(extra_info or {})
    if "trajectory_id" not in extra or "turn" not in extra:
        raise IntegrationError(f"row of data_source {data_source!r}: extra_info needs 'trajectory_id' and 'turn', got "
                               f"{sorted(extra)}")
    judge = _judge_for(extra)
    verdict = None
    for _ in range(1 + max(0, retries)):
        (verdict,) = judge.judge([str(extra["trajectory_id"])], [int(extra["turn"])], [solution_str])
        if not verdict.masked:
            return {"score": float(verdict.reward), "acc": float(verdict.equivalent)}
    assert verdict is not None
    raise InfraFailureError(f"{extra['trajectory_id']!r} turn {extra['turn']}: the verifier failed for infrastructure "
                            f"reasons {1 + max(0, retries)} times ({verdict.failure_kind}: {verdict.reason}); not scoring "
                            "this response 0")


def verl_dataset(pivots: Any, env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> Any:
    """veRL RL rows for a pivots dataset: `data_source`, `prompt` (chat messages), `ability`,
    `reward_model` ({style, ground_truth}), `extra_info` (state, env spec, tools as JSON)."""
    import datasets

    rows: dict[str, list[Any]] = {"data_source": [], "prompt": [], "ability": [], "reward_model": [], "extra_info": []}
    for rec in pivots_from_dataset(pivots):
        rows["data_source"].append(DATA_SOURCE_PREFIX + env_id)
        rows["prompt"].append([{"role": m["role"], "content": m.get("content") or _calls_text(m)} for m in rec.messages])
        rows["ability"].append(rec.domain)
        rows["reward_model"].append({"style": "rule", "ground_truth": json.dumps(rec.reference)})
        rows["extra_info"].append({"trajectory_id": rec.state.trajectory_id, "turn": rec.state.turn, "env_id": env_id,
                                   "env_kwargs": json.dumps(dict(env_kwargs or {})), "tools": json.dumps(rec.tools),
                                   "state_id": rec.state_id})
    return datasets.Dataset.from_dict(rows)


def _calls_text(m: Mapping[str, Any]) -> str:
    """An assistant message with tool calls only, as the Hermes text the model would have written."""
    parts = []
    for tc in m.get("tool_calls") or []:
        fn = tc.get("function") or {}
        args = fn.get("arguments", {})
        parts.append(render_tool_call(str(fn.get("name", "")), json.loads(args) if isinstance(args, str) else args))
    return "\n".join(parts)
