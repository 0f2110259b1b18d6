"""verifiers (0.4.0, `verifiers.v1`) glue: pivots as a taskset whose reward is our verifier, scored
the way verifiers scores a finished rollout: `await task.score(trace, runtime)` on a `vf.Trace`."""

from __future__ import annotations

import asyncio
import json
import shutil

import gymnasium as gym
import pytest
import verifiers.v1 as vf

from pivot_algo.pivots_dataset import pivots_to_dataset
from pivot_algo.profiler import StateProfile
from tests.conftest import require


def _trace(task, reply):
    """A trace as verifiers' rollout builds it (rollout.py), plus the prompt and one sampled reply."""
    trace = vf.Trace(task=vf.TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
                     agent=vf.AgentInfo(config=vf.AgentConfig()))
    for m in task.data.prompt:
        trace.nodes.append(vf.MessageNode(message=m, parent=len(trace.nodes) - 1 if trace.nodes else None))
    trace.nodes.append(vf.MessageNode(message=reply, parent=len(trace.nodes) - 1, sampled=True))
    return trace


def _reply_of(reference: dict):
    calls = [vf.ToolCall(id=tc.get("id") or "c0", name=tc["function"]["name"],
                         arguments=tc["function"]["arguments"] if isinstance(tc["function"]["arguments"], str)
                         else json.dumps(tc["function"]["arguments"]))
             for tc in reference.get("tool_calls") or []]
    return vf.AssistantMessage(content=reference.get("content"), tool_calls=calls or None)


@pytest.fixture
def terminal_env():
    require(shutil.which("bwrap") is not None, "bubblewrap (bwrap) is needed by the local sandbox")
    import pivot_envs  # noqa: F401
    from pivot_envs.sandbox import make_backend

    backend = make_backend("local")  # our own backend: the masked test closes it
    env = gym.make("PivotTerminal-v0", sandbox=backend, disable_env_checker=True)
    yield env, backend
    env.close()
    backend.close()


def test_the_taskset_reward_is_our_verifier_and_a_masked_verdict_is_a_failed_rollout(terminal_env):
    from pivot_algo.integrations.verifiers_env import PivotTask, PivotTaskset

    env, backend = terminal_env
    trajs = env.unwrapped.trajectories[:2]
    rows = [StateProfile(t.id, k, [1.0, 0.0], 0, 1, 1, 0.5, 0.25) for t in trajs for k in (0, 1)]
    taskset = PivotTaskset(pivots_to_dataset(rows, trajs), env)
    tasks = list(taskset)
    assert len(tasks) == 4 and all(isinstance(t, PivotTask) for t in tasks)
    first = tasks[0]
    assert first.data.trajectory_id == trajs[0].id and first.data.turn == 0
    assert [m.role for m in first.data.prompt] == [m["role"] for m in trajs[0].prefix(0)]
    assert [t.name for t in first.vf_tools()] == ["bash"]

    # the demonstration scores 1, a bare "Done." where a command is due scores 0 (a wrong answer)
    right = _trace(first, _reply_of(trajs[0].reference(0)))
    asyncio.run(first.score(right))
    assert right.rewards["pivot_verifier"].score == 1.0 and right.reward == 1.0
    wrong = _trace(first, vf.AssistantMessage(content="Done."))
    asyncio.run(first.score(wrong))
    assert wrong.rewards["pivot_verifier"].score == 0.0
    assert wrong.info["pivot_verdicts"][0]["reason"]

    # the sandboxes are lost: verifiers gets its own SandboxError and the reward stays unset, never 0
    backend.close()
    later = tasks[3]
    lost = _trace(later, _reply_of(trajs[1].reference(1)))
    with pytest.raises(vf.SandboxError, match="infrastructure failure"):
        asyncio.run(later.score(lost))
    assert lost.rewards.get("pivot_verifier") is None
