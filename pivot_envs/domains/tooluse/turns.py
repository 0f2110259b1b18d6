"""The per-trajectory facts `PivotToolUse-v0` needs, read from the task when it records them (the BFCL
converter does) and derived from `messages` when it does not (plain chat tool-use data).

- **Backend.** A trajectory has an executable backend when its task names the backend classes
  (`task["involved_classes"]`, with `initial_config`); without one it is *backend-free*: its calls are
  judged by verifiers that need no execution (canonical, paper, exact) and never run.
- **User turns.** `task["user_turns"]` (BFCL) or the runs of consecutive user messages in `messages`.
- **Turn of each step.** `task["turn_of_step"]` or, for assistant message k, the user turn it answers
  (the last run of user messages before it).
- **Message kind.** `task["message_turns"]` or, derived: "close" for a message that follows calls of
  its user turn (it reports what they returned), else None (judged by the same closing rule: it must
  say something specific). Derived data never has "clarify" turns: nothing records what is missing.
- **Defaults.** `task["defaults"]` ({function: {parameter: default}}) merged over the JSON-schema
  `default` of every optional parameter in `tools`, so an explicit default equals an omitted one
  without anyone writing the table by hand.
"""

from __future__ import annotations

from typing import Any

from pivot_envs.trajectory import Trajectory


def has_backend(traj: Trajectory) -> bool:
    return "involved_classes" in traj.task


def user_turns(traj: Trajectory) -> list[list[dict[str, Any]]]:
    if "user_turns" in traj.task:
        return traj.task["user_turns"]
    groups: list[list[dict[str, Any]]] = []
    previous = None
    for m in traj.messages:
        if m["role"] == "user":
            if previous != "user":
                groups.append([])
            groups[-1].append({"role": "user", "content": m.get("content") or ""})
        previous = m["role"]
    return groups or [[]]


def turn_of_step(traj: Trajectory) -> list[int]:
    if "turn_of_step" in traj.task:
        return traj.task["turn_of_step"]
    steps, turn, previous = [], -1, None
    for m in traj.messages:
        if m["role"] == "user" and previous != "user":
            turn += 1
        elif m["role"] == "assistant":
            steps.append(max(turn, 0))
        previous = m["role"]
    return steps


def message_kind(traj: Trajectory, k: int) -> str | None:
    if "message_turns" in traj.task:
        return traj.task["message_turns"].get(str(k))
    steps = turn_of_step(traj)
    if k >= len(steps) or traj.reference(k).get("tool_calls"):
        return None
    earlier = [j for j in range(k) if steps[j] == steps[k]]
    return "close" if any(traj.reference(j).get("tool_calls") for j in earlier) else None


def schema_defaults(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{function: {optional parameter: its JSON-schema default}}."""
    out: dict[str, dict[str, Any]] = {}
    for t in tools:
        params = t["function"].get("parameters") or {}
        required = set(params.get("required", []))
        found = {p: s["default"] for p, s in (params.get("properties") or {}).items()
                 if isinstance(s, dict) and "default" in s and p not in required}
        if found:
            out[t["function"]["name"]] = found
    return out


def defaults(traj: Trajectory) -> dict[str, dict[str, Any]]:
    merged = schema_defaults(traj.tools)
    for fn, values in traj.task.get("defaults", {}).items():
        merged[fn] = {**merged.get(fn, {}), **values}
    return merged
