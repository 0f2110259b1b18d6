"""Non-deterministic demonstrations match themselves, and the masking that allows it does not make
different work pass (both backends).

Each command below prints or writes something that differs between two runs (random values, temp
names, commit ids, timestamps, line order). Judged against itself it must score 1 - through the
identical-action shortcut AND through execution (`true; CMD` is not identical text, so the verifier
runs it and compares effects with what differs between two demonstration runs left out). Judged
against a genuinely different command it must score 0."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401
from pivot_envs.bash_tool import BASH_TOOL
from pivot_envs.parsing import render_bash_call
from pivot_envs.reference_runs import TextPattern, mask_present_time

SETUP = r"""set -e
printf 'alpha foo\nbeta\n' > notes.txt
git init -q repo && cd repo && echo v1 > f && git add f && git commit -qm init && echo v2 > f
"""
# no fixed GIT_*_DATE: commit ids then depend on the time, as in a real demonstration
GIT_ENV = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"}

# (non-deterministic demonstration, a genuinely different command)
NONDETERMINISTIC = [
    ("echo $RANDOM > r.txt", "echo hello > r.txt"),
    ("cd repo && git commit -am 'update f'", "cd repo && git commit -am 'other message'"),
    ("date > t", "echo 'Mon Jan  1 00:00:00 UTC 2024' > t"),
    ("mktemp", "touch /tmp/fixed && echo /tmp/fixed"),
    ("d=$(mktemp -d) && echo hi > $d/x", "d=$(mktemp -d) && echo ho > $d/x"),
    ("python3 -c 'import uuid; print(uuid.uuid4())' > id.txt", "echo not-a-uuid > id.txt"),
    ("seq 1 10 | sort -R > shuffled.txt", "seq 1 9 | sort -R > shuffled.txt"),
    # `echo $$ > pid` is left out: in a fresh PID namespace both reference runs often get the same pid
    # while the sampled fork gets another (seen on docker), so two runs cannot tell it varies (noted).
    ("date +%s%N > ns.txt", "echo 12345 > ns.txt"),
    ("head -c 16 /dev/urandom | od -An -tx1 > noise.txt", "head -c 8 /dev/urandom | od -An -tx1 > noise.txt"),
    ("touch stamp && stat -c %Y stamp", "touch -d 2020-01-01 stamp && stat -c %Y stamp"),
    ("git -C repo log -1 --format='%H %cd'", "git -C repo log -1 --format='%h'"),
    ("mktemp -p . XXXXXXXX.tmp", "mktemp -p /tmp XXXXXXXX.tmp"),
]


def call(cmd: str) -> dict:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": "c0", "type": "function",
                            "function": {"name": "bash", "arguments": json.dumps({"command": cmd})}}]}


def trajectories(pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"id": f"nondeterministic-{i}", "domain": "terminal",
             "task": {"workdir": "/app", "setup": SETUP, "test": "true", "env": GIT_ENV},
             "tools": [BASH_TOOL],
             "messages": [{"role": "user", "content": "do it"}, call(cmd), {"role": "tool", "content": ""},
                          {"role": "assistant", "content": "done"}]} for i, (cmd, _) in enumerate(pairs)]


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def nondeterministic_env(request):
    backend = request.getfixturevalue(f"{request.param}_backend")
    env = gym.make("PivotTerminal-v0", trajectories=trajectories(NONDETERMINISTIC), sandbox=backend)
    yield env
    env.close()


@pytest.mark.parametrize("index", range(len(NONDETERMINISTIC)), ids=[c for c, _ in NONDETERMINISTIC])
def test_nondeterministic_demonstration_matches_itself_not_other_work(nondeterministic_env, index):
    cmd, different = NONDETERMINISTIC[index]
    env = nondeterministic_env.unwrapped
    env.reset(options={"trajectory": index, "turn": 0})
    identical, executed, other = env.judge_actions([render_bash_call(cmd), render_bash_call(f"true; {cmd}"),
                                                    render_bash_call(different)])
    assert identical.reward == 1.0 and identical.details.get("executed") is False, identical.reason
    assert executed.reward == 1.0 and not executed.masked, executed.reason
    assert other.reward == 0.0 and not other.masked, other.reason


def test_single_reference_run_fails_a_nondeterministic_demonstration(local_backend):
    """Why two runs: with one reference run (the old rule) `echo $RANDOM > r.txt` loses to itself."""
    env = gym.make("PivotTerminal-v0", trajectories=trajectories(NONDETERMINISTIC[:1]), sandbox=local_backend,
                   trajectory=0)
    try:
        env.reset()
        env.unwrapped.verifier.reference_runs = 1
        (verdict,) = env.unwrapped.judge_actions([render_bash_call("true; echo $RANDOM > r.txt")])
        assert verdict.reward == 0.0 and "r.txt" in verdict.reason
    finally:
        env.close()


@pytest.mark.parametrize("a, b, same_kind, other_kind", [
    ("12345", "678", "99", "hello"),                       # a random number stays a number
    ("id 3f2a-9c1e", "id 0b7d-5e21", "id 77aa-0000", "id zz-top"),  # hex stays hex, the literal stays
    ("x\ny\nz", "z\nx\ny", "y\nz\nx", "x\ny\ny"),           # same lines in another order: the multiset counts
    ("same", "same", "same", "other"),                    # deterministic: literal
])
def test_text_pattern_table(a, b, same_kind, other_kind):
    pattern = TextPattern(a, b)
    assert pattern.matches(a) and pattern.matches(b) and pattern.matches(same_kind)
    assert not pattern.matches(other_kind)


def test_present_time_is_masked_but_dates_in_data_are_not():
    import time

    now = time.time()
    stamp = time.strftime("%a %b %e %H:%M:%S UTC %Y", time.gmtime(now))
    assert mask_present_time(f"built {stamp}", now) == "built <now>"
    assert mask_present_time(f"epoch {int(now)}", now) == "epoch <now>"
    assert mask_present_time("2024-01-05 12:00:00 login", now) == "2024-01-05 12:00:00 login"
    assert mask_present_time("epoch 1577836800", now) == "epoch 1577836800"
