"""A real PivotEnv over a small deterministic domain, for the algorithm tests.

Domain ("adder"): a register x starts at 0. The scripted user says what to do next ("x = 3. Next:
add 5", or "... Next: report"); the agent answers with an arithmetic expression over x and digits,
which sets x to its value ("x+5"), and finally reports x ("8"). The demonstration adds the task's
numbers one per turn, then reports the total. Actions are plain messages (no tool schemas), which
keeps prompts short enough for the tiny model to train on in seconds.

Pivot mode judges functionally: an answer is right when its value at the current x equals the
demonstration's value (so "3+x" and "x+1+2" count as "x+3"; "8" and "4+4" both report 8); a
tool call or an unevaluable answer is wrong, with a reason. Episode mode applies each answer and
scores 1 when the final report equals the task's total. Replaying turns 0..k-1 rebuilds x (each
replayed action counts as a rollout turn, as every verification does).
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any

from pivot_envs.base_env import PivotEnv
from pivot_envs.parsing import ParsedAction
from pivot_envs.trajectory import Trajectory
from pivot_envs.verdict import Verdict

_EXPR = re.compile(r"^[x0-9+\-* ()]{1,40}$")


def evaluate(expression: Any, x: int) -> int | None:
    """Value of `expression` with x bound, or None when it is not a small arithmetic expression."""
    if not isinstance(expression, str) or not _EXPR.match(expression.strip()):
        return None
    try:
        value = eval(expression.strip(), {"__builtins__": {}}, {"x": x})  # the charset is checked above
    except Exception:  # noqa: BLE001 - whatever does not evaluate is no answer
        return None
    return value if isinstance(value, int) else None


def instruction(numbers: list[int], done: int, x: int) -> str:
    return f"x = {x}. Next: add {numbers[done]}" if done < len(numbers) else f"x = {x}. Next: report"


def make_trajectory(seed: int, n_steps: int = 2) -> dict:
    """One task and its demonstration, deterministic for `seed`."""
    rng = random.Random(seed)
    numbers = [rng.randint(1, 9) for _ in range(n_steps)]
    messages: list[dict] = []
    x = 0
    for i, n in enumerate(numbers):
        messages += [{"role": "user", "content": instruction(numbers, i, x)}, {"role": "assistant", "content": f"x+{n}"}]
        x += n
    messages += [{"role": "user", "content": instruction(numbers, len(numbers), x)}, {"role": "assistant", "content": str(x)}]
    return {"id": f"adder-{seed}", "domain": "tooluse", "task": {"numbers": numbers}, "tools": [], "messages": messages}


def make_trajectories(seeds: range | list[int], n_steps: int = 2) -> list[dict]:
    return [make_trajectory(s, n_steps) for s in seeds]


@dataclasses.dataclass
class AdderState:
    trajectory: Trajectory
    x: int
    done: int  # additions applied so far
    reported: int | None = None


class AdderEnv(PivotEnv):
    """See the module docstring."""

    domain = "tooluse"

    def load_state(self, traj: Trajectory, k: int) -> AdderState:
        state = AdderState(traj, 0, 0)
        for action in traj.actions_before(k):
            state.x = evaluate(action["content"], state.x)
            state.done += 1
            self.costs.replay_turns += 1
            self.costs.rollout_turns += 1
        return state

    def state_key(self, state: AdderState) -> str:
        return f"{state.trajectory.id}:{state.done}:{state.x}"

    def _value(self, state: AdderState, content: str) -> int | None:
        self.costs.rollout_turns += 1
        return evaluate(content, state.x)

    def judge(self, state: AdderState, action: ParsedAction, reference: dict) -> Verdict:
        if action.error or action.tool_calls:
            return Verdict.wrong(action.error or "expected an expression, got a tool call", "execution")
        got, want = self._value(state, action.content), self._value(state, reference["content"])
        if got is None:
            return Verdict.wrong(f"{action.content[:40]!r} is not an arithmetic expression over x", "execution")
        if got == want:
            return Verdict.correct(f"value {got} as demonstrated", "execution")
        return Verdict.wrong(f"value {got} differs from the demonstration's {want}", "execution")

    def execute(self, state: AdderState, action: ParsedAction) -> list[dict]:
        return [{"role": "tool", "content": "error: this task has no tools; answer with an expression"}]

    def next_user_message(self, state: AdderState) -> str | None:
        numbers = state.trajectory.task["numbers"]
        value = self._value(state, self._messages[-1].get("content") or "")
        if state.done >= len(numbers):  # this was the report
            state.reported = value
            return None
        if value is not None:
            state.x = value
        state.done += 1
        return instruction(numbers, state.done, state.x)

    def episode_reward(self, state: AdderState) -> tuple[float, dict]:
        total = sum(state.trajectory.task["numbers"])
        ok = state.reported == total and state.x == total
        return float(ok), {"reported": state.reported, "x": state.x}
