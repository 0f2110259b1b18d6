"""`verifiers` glue (the `verifiers` package, 0.4.0: its `verifiers.v1` API): pivots as a taskset
whose task reward is our verifier.

    from pivot_algo.integrations.verifiers_env import PivotTaskset
    taskset = PivotTaskset(pivots, env)            # pivots: a pivots Dataset; env: pivot-mode env or VerifierPool
    for task in taskset: ...                       # vf tasks: prompt = the conversation before turn k

In verifiers, a plain taskset resolves to its `SingleAgentEnv` (one agent seat); after each rollout
the framework calls `await task.score(trace, runtime)`, which runs every `@vf.reward` method of the
task. `PivotTask.pivot_verifier` judges the trace's last sampled assistant message at the task's
(trajectory, turn) state and returns 1.0 or 0.0. A masked verdict (infrastructure failure) raises
`vf.SandboxError` instead: verifiers then records the error on the trace, leaves the reward unset
(`None`: "scoring did not run") and marks the rollout failed, which trainers drop - it is never
scored 0.

Each task also carries the state's tools (`PivotTaskData.tool_schemas`, OpenAI function schemas) and
`vf_tools()` turns them into `vf.Tool`s for a harness that exposes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import verifiers.v1 as vf

from pivot_algo.integrations.judging import StateJudge
from pivot_algo.pivots_dataset import pivots_from_dataset


def to_vf_message(m: dict) -> dict:
    """An OpenAI chat message as a verifiers message dict (tool calls flattened to id/name/arguments)."""
    role = m["role"]
    if role == "assistant":
        calls = []
        for i, tc in enumerate(m.get("tool_calls") or []):
            fn = tc.get("function") or {}
            args = fn.get("arguments", {})
            calls.append({"id": str(tc.get("id") or f"call_{i}"), "type": "function", "name": fn.get("name", ""),
                          "arguments": args if isinstance(args, str) else json.dumps(args)})
        return {"role": "assistant", "content": m.get("content"), "tool_calls": calls or None}
    if role == "tool":
        return {"role": "tool", "tool_call_id": str(m.get("tool_call_id") or ""), "content": m.get("content") or "",
                "name": m.get("name")}
    return {"role": role, "content": m.get("content") or ""}


def from_vf_message(message: Any) -> str | dict:
    """A verifiers assistant message as the action our env takes: its text, or (with tool calls) an
    OpenAI assistant message."""
    if not message.tool_calls:
        return message.content or ""
    return {"role": "assistant", "content": message.content or "",
            "tool_calls": [{"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
                           for tc in message.tool_calls]}


class PivotTaskData(vf.TaskData):
    """One pivot state: `prompt` (inherited) is the conversation before turn k."""

    trajectory_id: str
    turn: int
    tool_schemas: str = "[]"
    """The state's OpenAI function schemas, as JSON."""
    profile_mean: float | None = None
    """The start policy's mean reward here (from the profile)."""


class PivotTask(vf.Task[PivotTaskData, vf.State, vf.TaskConfig]):
    """A pivot state whose reward is the env's verifier (see the module docstring)."""

    judge: StateJudge | None = None

    def vf_tools(self) -> list[vf.Tool]:
        out = []
        for t in json.loads(self.data.tool_schemas):
            fn = t.get("function", {})
            out.append(vf.Tool(name=fn["name"], description=fn.get("description", ""),
                               parameters=fn.get("parameters", {})))
        return out

    @vf.reward
    async def pivot_verifier(self, task: PivotTaskData, trace: vf.Trace) -> float:
        if self.judge is None:
            raise vf.TaskError("this PivotTask has no verifier: build it through PivotTaskset(pivots, env)")
        replies = trace.assistant_messages
        if not replies:
            return 0.0  # the model produced nothing: a wrong answer, not an infra failure
        (verdict,) = self.judge.judge([task.trajectory_id], [task.turn], [from_vf_message(replies[-1])])
        trace.info.setdefault("pivot_verdicts", []).append(verdict.to_dict())
        if verdict.masked:
            raise vf.SandboxError(f"infrastructure failure while verifying ({verdict.failure_kind}): {verdict.reason}")
        return float(verdict.reward)


class PivotTaskset(vf.Taskset[PivotTask, vf.TasksetConfig]):
    """The pivots of a pivots dataset (`pivot_algo.pivots_dataset`) as verifiers tasks, judged by
    `source` (a pivot-mode env or a `pivot_algo.distributed.VerifierPool`)."""

    def __init__(self, pivots: Any, source: Any, config: vf.TasksetConfig | None = None):
        super().__init__(config if config is not None else vf.TasksetConfig(id="pivotrl-pivots"))
        self.records = pivots_from_dataset(pivots)
        self.judge = StateJudge(source)

    def load(self) -> Iterator[PivotTask]:
        for rec in self.records:
            data = PivotTaskData(id=rec.state_id, name=rec.state_id, prompt=[to_vf_message(m) for m in rec.messages],
                                 trajectory_id=rec.state.trajectory_id, turn=rec.state.turn,
                                 tool_schemas=json.dumps(rec.tools), profile_mean=rec.profile.mean)
            task = PivotTask(data)
            task.judge = self.judge
            yield task
