"""PivotTerminal-v0: a Linux terminal task, reset to any turn of a demonstration.

## Description
The agent works in a sandbox (Docker container or local bubblewrap jail) with one tool, `bash`.
Each trajectory comes with a task (`setup` script, `test` script) and the demonstration's commands.
`reset` puts the sandbox into exactly the state it had after the demonstration's first k commands
(replayed once, then served from the snapshot cache) and returns the conversation up to turn k.

## Action Space
`AssistantActionSpace`: model text with Hermes `<tool_call>{"name": "bash", "arguments": {"command":
...}}</tool_call>` blocks, or an assistant message dict. Text without a tool call is a plain message
(the agent says it is done).

## Observation Space
`ConversationSpace`: `{"messages": [...], "tools": [bash schema]}`.

## Rewards
pivot mode: 1 if the action is functionally equivalent to the demonstration's (see `verifier.py`),
else 0; infrastructure failures are masked (`info["masked"]`). episode mode: 1 if the task's test
passes when the agent stops, else 0.

## Starting State
The state after the demonstration's actions 0..k-1 (`reset_to_turn=k` or `options={"turn": k}`).

## Episode End
pivot mode: after one step. episode mode: terminated when the agent answers without a tool call;
truncated after `max_turns` actions.

## Arguments
`trajectories` (None = the built-in suite, split `split`), `sandbox` ("docker" | "local" | a backend),
`verifier` ("execution" | "paper" | "exact" | an object with `judge`), `message_check` ("content" |
"task_state" | "any") and `message_overlap` (see verifier.py), `image`
(default image for tasks that name none), `verdict_workers` (default 4: how many of a group's sampled
actions `judge_actions` runs at once, each in its own fork; the state's two reference runs are done
once and shared; 1 = one after another, same verdicts), plus the PivotEnv arguments (`reset_to_turn`,
`trajectory`, `mode`, `parser`, `max_turns`).

## Examples
    env = gym.make("PivotTerminal-v0", reset_to_turn=2, sandbox="local")
    obs, info = env.reset(options={"trajectory": 0})
    obs, reward, terminated, truncated, info = env.step(info["reference"])   # reward 1.0
"""

from __future__ import annotations

import logging
from typing import Any

from pivot_envs.bash_tool import bash_commands, format_tool_output
from pivot_envs.errors import ReplayError, TrajectoryError
from pivot_envs.parsing import ParsedAction
from pivot_envs.registration import spec_of_domain
from pivot_envs.sandbox import SandboxBackend, SandboxLimits
from pivot_envs.sandbox.base import Sandbox
from pivot_envs.sandboxed_env import SandboxedEnv, SandboxState
from pivot_envs.trajectory import Trajectory

log = logging.getLogger(__name__)

TerminalState = SandboxState  # the terminal's state at turn k is just the sandbox snapshot


class TerminalEnv(SandboxedEnv):
    __doc__ = __doc__
    domain = "terminal"
    # A group's forks at once: on 2 cores, 4 keeps both busy while forks wait on bwrap / docker exec
    # (benchmarks/verifier_group.py measures 1, 2, 4 and 8).
    verdict_workers = 4

    def __init__(self, trajectories: Any = None, *, sandbox: str | SandboxBackend = "docker",
                 verifier: Any = "execution", message_check: str = "content", message_overlap: float = 0.3,
                 split: str = "train", image: str | None = None, limits: SandboxLimits | None = None,
                 **kwargs: Any):
        self.split = split
        super().__init__(trajectories, sandbox=sandbox, image=image, limits=limits, **kwargs)
        self.message_check, self.message_overlap = message_check, message_overlap
        self.verifier: Any = spec_of_domain(self.domain).build_verifier(self, verifier)
        if self.mode == "episode" or (verifier == "execution" and message_check != "any"):
            self._require_tests("mode='episode'" if self.mode == "episode" else
                                f"verifier='execution' with message_check={message_check!r}")

    def _require_tests(self, why: str) -> None:
        """The task's `test` script decides episodes and, with the execution verifier, message turns:
        a task without one fails here, naming it, not at its first message turn (a masked verdict) or
        episode end (a KeyError)."""
        for t in self.trajectories:
            test = t.task.get("test")
            if not isinstance(test, str) or not test.strip():
                raise TrajectoryError(f"trajectory {t.id!r}: the task has no 'test' script, which {why} runs; add "
                                      "one (exit 0 = solved), or use verifier='paper' / 'exact' or "
                                      "message_check='any' in pivot mode", field="task.test")

    def default_trajectories(self) -> list[Trajectory | dict]:
        from pivot_envs.domains.terminal.tasks import builtin_trajectories

        return list(builtin_trajectories(self.split))

    checks_processes = True  # a demonstration may start a server in the background (sandboxed_env.py)

    def replay_action(self, box: Sandbox, traj: Trajectory, action: dict, i: int, *,
                      watch: bool = False) -> tuple[str, ...] | None:
        cmds, why = bash_commands(action)
        if cmds is None:
            raise ReplayError(f"{traj.id!r} turn {i}: demonstration action is not a bash call: {why}")
        recorded = traj.tool_outputs_after(i)
        left: list[str] = []
        for j, cmd in enumerate(cmds):
            if watch:
                res, procs = self.exec_watched(box, traj, cmd)
                left.extend(procs or ())
            else:
                res = self.exec_in(box, traj, cmd)
            self.costs.replay_turns += 1
            fresh = format_tool_output(res, timeout_s=self.command_timeout(traj))
            if j < len(recorded) and recorded[j].get("content") not in (None, fresh):
                self.divergences.append({"trajectory": traj.id, "turn": i, "recorded": recorded[j]["content"][:300],
                                         "replayed": fresh[:300]})
                log.info("replay of %s turn %d diverges from the recorded output", traj.id, i)
        return tuple(left) if watch else None

    # ------------------------------------------------------------------ hooks
    def judge(self, state: TerminalState, action: ParsedAction, reference: dict):
        return self.verifier.judge(state, action, reference)

    def execute(self, state: TerminalState, action: ParsedAction) -> list[dict]:
        msgs = []
        cmds, why = bash_commands(action)
        for i, call in enumerate(action.tool_calls):
            if cmds is None:
                content = f"error: {why}"
            else:
                assert state.sandbox is not None, "episode mode keeps a live sandbox"
                res = self.exec_in(state.sandbox, state.traj, cmds[i])
                self.costs.rollout_turns += 1
                content = format_tool_output(res, timeout_s=self.command_timeout(state.traj))
            msgs.append({"role": "tool", "tool_call_id": call.id or f"call_{i}", "content": content})
        return msgs
