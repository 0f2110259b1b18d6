"""Terminal verifier: equivalent command pairs score 1, different ones 0, bad output is a verdict.

Each pair is judged by really executing both commands in two forks of the same sandbox state (both
backends)."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs.bash_tool import BASH_TOOL
from pivot_envs.parsing import render_bash_call, render_tool_call

SETUP = r"""set -e
printf 'alpha foo\nbeta foo foo\ngamma\n' > notes.txt
printf 'x\n' > a.txt; printf 'y\n' > b.txt
printf '#!/bin/sh\necho run\n' > run.sh; chmod 644 run.sh
git init -q repo && cd repo && echo v1 > f && git add f && git commit -qm init && echo v2 > f
cd /app && git init -q idx && echo a > idx/a.txt && echo b > idx/b.txt
"""


def call(cmd: str) -> dict:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": "c0", "type": "function",
                            "function": {"name": "bash", "arguments": json.dumps({"command": cmd})}}]}


def traj_with_reference(cmd: str, timeout_s: float = 10.0) -> dict:
    return {"id": f"pair-{abs(hash(cmd))}", "domain": "terminal",
            "task": {"workdir": "/app", "setup": SETUP, "test": "true", "timeout_s": timeout_s,
                     "env": {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
                             "GIT_COMMITTER_EMAIL": "a@b", "GIT_AUTHOR_DATE": "2024-01-01T00:00:00",
                             "GIT_COMMITTER_DATE": "2024-01-01T00:00:00"}},
            "tools": [BASH_TOOL],
            "messages": [{"role": "user", "content": "do it"}, call(cmd), {"role": "tool", "content": ""},
                         {"role": "assistant", "content": "done"}]}


def judge(backend, reference: str, action: str, timeout_s: float = 10.0, raw: bool = False):
    """Judge `action` (a command, or raw model text when `raw`) against the reference command."""
    env = gym.make("PivotTerminal-v0", trajectories=[traj_with_reference(reference, timeout_s)],
                   sandbox=backend, trajectory=0, reset_to_turn=0)
    try:
        env.reset()
        _, reward, terminated, _, info = env.step(action if raw else call(action))
        assert terminated
        return reward, info
    finally:
        env.close()


EQUIVALENT = [
    ("wc -l < notes.txt", "cat notes.txt | wc -l"),
    ("echo hi > greeting", "printf 'hi\\n' > greeting"),
    ("sed -i 's/foo/bar/g' notes.txt",
     "python3 -c \"p='notes.txt'; s=open(p).read(); open(p,'w').write(s.replace('foo','bar'))\""),
    ("chmod +x run.sh", "chmod 755 run.sh"),
    ("mkdir -p txt && mv a.txt b.txt txt/", "mkdir txt; mv *.txt txt/ ; mv txt/notes.txt ."),
    ("cd repo && git commit -qam 'update f'", "cd repo && git add f && git commit -q -m 'Bump f to v2'"),
    ("grep -c foo notes.txt", "grep foo notes.txt | wc -l"),
]

DIFFERENT = [
    ("echo hi > greeting", "echo ho > greeting", "file-system"),
    ("wc -l < notes.txt", "wc -l notes.txt", "output"),
    ("sed -i 's/foo/bar/g' notes.txt", "sed -i 's/foo/bar/' notes.txt", "file-system"),
    ("rm a.txt", "true", "file-system"),
    ("grep foo notes.txt", "grep nothing-here notes.txt", "exit status"),
    ("chmod +x run.sh", "chmod 600 run.sh", "file-system"),
    ("cd repo && git commit -qam 'update f'", "cd repo && git add f", "git"),
    # the staging area counts: two untracked files, one staged vs both
    ("cd idx && git add a.txt", "cd idx && git add -A", "git"),
    # same status ("MM f"), same files, same HEAD; only the staged blob differs
    ("cd repo && git add f && echo v3 > f", "cd repo && echo v4 > f && git add f && echo v3 > f", "git"),
    # every persistent directory is compared, not only the workdir
    ("echo x > /tmp/scratch; echo ok", "echo ok", "/tmp/scratch"),
    ("echo 'alias ll=ls' >> /root/.bashrc", "true", "/root/.bashrc"),
]


@pytest.mark.parametrize("reference, action", EQUIVALENT)
def test_equivalent_pairs_score_1(sandbox_backend, reference, action):
    reward, info = judge(sandbox_backend, reference, action)
    assert reward == 1.0, info["reason"]


@pytest.mark.parametrize("reference, action, why", DIFFERENT)
def test_different_pairs_score_0(sandbox_backend, reference, action, why):
    reward, info = judge(sandbox_backend, reference, action)
    assert reward == 0.0 and not info["masked"]
    assert why in info["reason"], info["reason"]


@pytest.mark.parametrize("text, why", [
    ('<tool_call>{"name": "bash", "arguments": </tool_call>', "not valid JSON"),
    (render_tool_call("python", {"code": "1"}), "unknown tool"),
    (render_tool_call("bash", {"cmd": "ls"}), "command"),
    ("I am done.", "plain message"),
])
def test_bad_model_output_is_a_reward_0_verdict(local_backend, text, why):
    reward, info = judge(local_backend, "ls", text, raw=True)
    assert reward == 0.0 and not info["masked"]
    assert why in info["reason"]


def test_hanging_and_flooding_commands_are_verdicts(sandbox_backend):
    reward, info = judge(sandbox_backend, "ls", "sleep 60", timeout_s=2.0)
    assert reward == 0.0 and "timed out" in info["reason"]
    reward, info = judge(sandbox_backend, "ls", "yes flood | head -c 50000000", timeout_s=10.0)
    assert reward == 0.0 and not info["masked"]


def test_paper_and_exact_verifiers(local_backend):
    traj = traj_with_reference("wc -l < notes.txt")
    for verifier, action, expected in [("exact", "wc -l < notes.txt", 1.0), ("exact", "wc -l <notes.txt", 0.0),
                                       ("paper", "wc -l <notes.txt", 1.0), ("paper", "cat notes.txt | wc -l", 0.0)]:
        env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=local_backend, verifier=verifier,
                       trajectory=0)
        try:
            env.reset()
            _, reward, *_ = env.step(call(action))
        finally:
            env.close()
        assert reward == expected, (verifier, action)


def test_final_message_is_judged_on_state_and_content(local_backend):
    """At the last turn (reference = a 'done' message) a garbage or unrelated message scores 0 even
    though the task is done; a message that reports the result scores 1; any command scores 0."""
    from pivot_envs.domains.terminal.tasks import builtin_trajectories
    from pivot_envs.trajectory import load_trajectories

    traj = load_trajectories(builtin_trajectories("train"))[0]
    last = traj.num_turns - 1
    reference = traj.reference(last)["content"]
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=local_backend, trajectory=0,
                   reset_to_turn=last)
    try:
        env.reset()
        v_ref, v_garbage, v_vague, v_cmd = env.unwrapped.judge_actions(
            [reference, "xq zzv 0k", "All finished!", call("ls")])
        assert v_ref.reward == 1.0, v_ref.reason
        assert v_garbage.reward == 0.0 and "does not report" in v_garbage.reason
        assert v_vague.reward == 0.0
        assert v_cmd.reward == 0.0
        # an early 'done' (task not finished) scores 0 whatever it says
        env.reset(options={"turn": 0})
        (v_early,) = env.unwrapped.judge_actions([reference])
        assert v_early.reward == 0.0
    finally:
        env.close()


def test_every_exit_status_of_a_multi_command_action_counts(sandbox_backend):
    """`false` then `ls` as two calls ends with exit 0 like the demonstration's `ls`, but one of its
    commands failed: not equivalent. `a && b` as one call and as two calls are."""
    reward, info = judge(sandbox_backend, "ls", render_bash_call("false") + "\n" + render_bash_call("ls"), raw=True)
    assert reward == 0.0 and not info["masked"] and "exit status" in info["reason"], info["reason"]
    reward, info = judge(sandbox_backend, "mkdir -p d && echo hi > d/x",
                         render_bash_call("mkdir -p d") + "\n" + render_bash_call("echo hi > d/x"), raw=True)
    assert reward == 1.0, info["reason"]


@pytest.mark.parametrize("action", ["rm -rf /app", "cd / && rm -rf /app /tmp/* /root", "kill -9 -1"])
def test_an_action_that_breaks_its_sandbox_scores_0_not_masked(sandbox_backend, action):
    reward, info = judge(sandbox_backend, "ls", action)
    assert reward == 0.0 and not info["masked"], info["reason"]
    assert info["reason"]


def test_a_failing_backend_is_masked_not_scored(local_backend):
    """After the reference ran, the state's snapshot disappears (the backend lost its storage):
    the action cannot run anywhere, which is not the model's fault."""
    traj = traj_with_reference("ls")
    traj["id"] = "infra-failure"
    traj["task"] = dict(traj["task"], setup=SETUP + "echo unique-to-the-infra-test > marker\n")
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=local_backend, trajectory=0)
    try:
        env.reset()
        (first,) = env.unwrapped.judge_actions([call("ls -1")])  # builds the reference effect
        assert first.reward == 1.0, first.reason
        local_backend.release(env.unwrapped._state.snapshot)
        (verdict,) = env.unwrapped.judge_actions([call("ls -a")])
        assert verdict.masked and verdict.failure_kind == "sandbox_error", verdict.reason
    finally:
        env.close()
        env.unwrapped.snapshots.clear()


def test_identical_action_is_equivalent_without_execution(local_backend):
    traj = traj_with_reference("sed -i 's/foo/bar/g' notes.txt")
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=local_backend, trajectory=0)
    try:
        env.reset()
        before = env.unwrapped.costs.rollout_turns
        (verdict,) = env.unwrapped.judge_actions([call("  sed -i 's/foo/bar/g' notes.txt \n")])
        assert verdict.reward == 1.0 and verdict.details["executed"] is False
        assert env.unwrapped.costs.rollout_turns == before
    finally:
        env.close()


def test_verdict_cache_keys_on_reference_and_verifier(local_backend):
    """Two trajectories share a prefix (same state at turn 1) but their demonstrations differ there.
    With one shared cache, the same action must get each trajectory's own verdict; and two verifiers
    sharing the cache must not see each other's verdicts."""
    from pivot_envs.base_env import VerdictCache

    def two_step(second: str, tid: str) -> dict:
        t = traj_with_reference("echo hi > greeting")
        t["id"] = tid
        t["messages"] = [{"role": "user", "content": "do it"}, call("echo hi > greeting"),
                         {"role": "tool", "content": ""}, call(second), {"role": "tool", "content": ""},
                         {"role": "assistant", "content": "done"}]
        return t

    cache = VerdictCache()
    trajs = [two_step("rm a.txt", "shared-prefix-a"), two_step("rm b.txt", "shared-prefix-b")]
    env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=local_backend, verdict_cache=cache)
    exact = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=local_backend, verdict_cache=cache,
                     verifier="exact")
    try:
        env.reset(options={"trajectory": "shared-prefix-a", "turn": 1})
        key_a = env.unwrapped.state_key(env.unwrapped._state)
        (va,) = env.unwrapped.judge_actions([call("rm -f a.txt")])
        env.reset(options={"trajectory": "shared-prefix-b", "turn": 1})
        assert env.unwrapped.state_key(env.unwrapped._state) == key_a  # the same state
        (vb,) = env.unwrapped.judge_actions([call("rm -f a.txt")])
        assert va.reward == 1.0 and vb.reward == 0.0, (va.reason, vb.reason)
        exact.reset(options={"trajectory": "shared-prefix-a", "turn": 1})
        (ve,) = exact.unwrapped.judge_actions([call("rm -f a.txt")])
        assert ve.reward == 0.0 and ve.method == "exact"
    finally:
        env.close()
        exact.close()


def test_filling_the_disk_quota_scores_0_with_a_reason(sandbox_backend):
    traj = traj_with_reference("ls")
    traj["id"] = "disk-quota"
    traj["task"] = dict(traj["task"], limits={"disk_mb": 32})
    env = gym.make("PivotTerminal-v0", trajectories=[traj], sandbox=sandbox_backend, trajectory=0)
    try:
        env.reset()
        _, reward, _, _, info = env.step(call("dd if=/dev/zero of=big.bin bs=1M count=200 2>/dev/null; ls"))
        assert reward == 0.0 and not info["masked"]
        assert "disk quota" in info["reason"], info["reason"]
    finally:
        env.close()


@pytest.mark.parametrize("reply", ["", "   \n"])
def test_exact_verifier_gives_an_empty_reply_nothing_even_against_an_empty_demonstration(reply):
    from pivot_envs.domains.terminal.verifier import ExactVerifier
    from pivot_envs.parsing import parse_action

    verdict = ExactVerifier().judge(None, parse_action(reply), {"role": "assistant", "content": ""})
    assert verdict.reward == 0 and not verdict.masked and verdict.reason == "empty message"
    assert ExactVerifier().judge(None, parse_action("Done."), {"role": "assistant", "content": "Done."}).reward == 1
