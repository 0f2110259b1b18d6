"""PivotSWE-v0 in real Docker containers: the demonstration is equivalent to itself, hand-picked
actions are judged right both ways (read-only and edits), episodes are graded by FAIL_TO_PASS /
PASS_TO_PASS, and bad input is a clear error or a reward-0 verdict with nothing leaked."""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import pytest

import pivot_envs  # noqa: F401  (registers the envs)
from pivot_envs.domains.swe.expert import builtin_trajectories
from pivot_envs.errors import ReplayError
from pivot_envs.parsing import render_tool_call

pytestmark = pytest.mark.docker


def _pick(kind: str = "flip_comparison", repo: str = "pytoolz/toolz", function_not: str = "first") -> dict:
    for t in builtin_trajectories("all"):
        m = t["task"].get("mutation", {})
        if t["task"]["repo"] == repo and m.get("kind") == kind and m.get("function") != function_not:
            return t
    raise AssertionError(f"no {kind} instance of {repo} in the shipped data")


def _turn_of(traj: dict, predicate) -> int:
    k = 0
    for m in traj["messages"]:
        if m["role"] != "assistant":
            continue
        calls = m.get("tool_calls") or []
        if calls and predicate(calls[0]["function"]["name"], json.loads(calls[0]["function"]["arguments"])):
            return k
        k += 1
    raise AssertionError("no such turn")


def bash(cmd: str) -> str:
    return render_tool_call("bash", {"command": cmd})


def edit(**args) -> str:
    return render_tool_call("str_replace_editor", args)


@pytest.fixture(scope="module")
def traj():
    return _pick()


@pytest.fixture(scope="module")
def env(traj, docker_backend):
    e = gym.make("PivotSWE-v0", trajectories=[traj], sandbox=docker_backend)
    yield e.unwrapped
    e.close()


def _judge(env, turn: int, actions: list[str]):
    env.reset(options={"trajectory": 0, "turn": turn})
    return env.judge_actions(actions)


@pytest.mark.slow
def test_the_demonstration_is_equivalent_to_itself_at_its_edit_and_submit_turns(env, traj):
    n = sum(1 for m in traj["messages"] if m["role"] == "assistant")
    k_edit = _turn_of(traj, lambda name, a: a.get("command") == "str_replace")
    for k in (0, k_edit, n - 1):
        _, info = env.reset(options={"trajectory": 0, "turn": k})
        _, reward, terminated, _, info = env.step(info["reference"])
        assert reward == 1.0 and terminated and not info["masked"], (k, info["reason"])


@pytest.mark.slow
def test_a_different_fix_is_equivalent_and_a_fix_that_breaks_another_test_is_not(env, traj):
    k = _turn_of(traj, lambda name, a: a.get("command") == "str_replace")
    ref = json.loads(traj["messages"][[i for i, m in enumerate(traj["messages"]) if m["role"] == "assistant"][k]]
                     ["tool_calls"][0]["function"]["arguments"])
    buggy_expr = traj["task"]["mutation"]["description"].split(" -> ", 1)[1]
    assert buggy_expr in ref["old_str"]
    # `not (<buggy comparison>)` is the right logic written another way: a different diff
    other_fix = ref["old_str"].replace(buggy_expr, f"not ({buggy_expr})", 1)
    path = ref["path"]
    breaks_first = (f"sed -i 's/    return next(iter(seq))/    return None/' {path.replace('/testbed/', '')}")
    verdicts = _judge(env, k, [
        edit(command="str_replace", path=path, old_str=ref["old_str"], new_str=other_fix),
        bash("python3 - <<'EOF'\n"
             f"p = {path!r}\ns = open(p).read()\n"
             f"s = s.replace({ref['old_str']!r}, {ref['new_str']!r}, 1)\nopen(p, 'w').write(s)\nEOF\n" + breaks_first),
        edit(command="view", path=path),
    ])
    assert verdicts[0].reward == 1.0 and "same" in verdicts[0].reason, verdicts[0]
    assert verdicts[1].reward == 0.0 and "changes other tests" in verdicts[1].reason, verdicts[1]
    assert verdicts[2].reward == 0.0 and "unchanged" in verdicts[2].reason, verdicts[2]
    assert not any(v.masked for v in verdicts)


@pytest.mark.slow
def test_read_only_actions_equivalent_when_they_return_the_same_information(env, traj):
    k_grep = _turn_of(traj, lambda name, a: name == "bash" and a["command"].startswith("grep -rn 'def "))
    func = traj["task"]["mutation"]["function"].rsplit(".", 1)[-1]
    path = traj["task"]["mutation"]["path"]
    verdicts = _judge(env, k_grep, [
        bash(f"grep -n 'def {func}\\b' {path}"),            # same line, other format: equivalent
        bash("grep -rn 'def groupby' toolz"),                 # other information
        bash(f"grep -rn 'def {func}\\b' toolz && touch toolz/new.py"),  # right output, but changes the repo
    ])
    assert [v.reward for v in verdicts] == [1.0, 0.0, 0.0], [v.reason for v in verdicts]
    f2p = traj["task"]["fail_to_pass"][0]
    k_repro = _turn_of(traj, lambda name, a: name == "bash" and "pytest" in a["command"])
    verdicts = _judge(env, k_repro, [
        bash(f"python3 -m pytest -rA -p no:cacheprovider {f2p}"),   # other flags, same outcome
        bash("python3 -m pytest -q -p no:cacheprovider toolz/tests/test_dicttoolz.py"),  # other tests
    ])
    assert [v.reward for v in verdicts] == [1.0, 0.0], [v.reason for v in verdicts]


def test_deleting_the_repository_is_reward_0_and_leaves_nothing_behind(env, traj, docker_backend):
    k = 0
    v = _judge(env, k, [bash("rm -rf /testbed")])[0]
    assert v.reward == 0.0 and not v.masked and "deletes the repository" in v.reason
    env.reset(options={"trajectory": 0, "turn": k})
    assert docker_backend.live_resources() == []


@pytest.mark.slow
def test_episode_reward_is_fail_to_pass_and_pass_to_pass(traj, docker_backend):
    e = gym.make("PivotSWE-v0", trajectories=[traj], sandbox=docker_backend, mode="episode")
    try:
        n = sum(1 for m in traj["messages"] if m["role"] == "assistant")
        _, info = e.reset(options={"trajectory": 0, "turn": n - 1})       # the fix is in: submit
        _, reward, terminated, _, info = e.step("I fixed it in " + traj["task"]["mutation"]["path"])
        assert terminated and reward == 1.0 and info["tests"]["broken"] == []
        _, info = e.reset(options={"trajectory": 0, "turn": 1})           # nothing fixed yet: submit
        _, reward, terminated, _, info = e.step("Done.")
        assert terminated and reward == 0.0 and info["tests"]["still_failing"] and not info["masked"]
    finally:
        e.close()
    assert docker_backend.live_resources() == []


def _variant(traj: dict, name: str, **task_changes) -> dict:
    out = copy.deepcopy(traj)
    out["id"] = name
    out["task"].update(task_changes)
    return out


def _broken_patch(patch: str) -> str:
    lines = patch.split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith("-") and not line.startswith("---"))
    lines[i] += "  # a line the file does not have"
    return "\n".join(lines)


@pytest.mark.parametrize(("changes", "message"), [
    (lambda t: {"bug_patch": _broken_patch(t["task"]["bug_patch"])}, "does not apply"),
    (lambda t: {"base_commit": "0" * 40}, "base_commit"),
], ids=["patch-does-not-apply", "wrong-base-commit"])
def test_bad_instances_are_clear_errors(traj, docker_backend, changes, message):
    e = gym.make("PivotSWE-v0", trajectories=[_variant(traj, "bad", **changes(traj))], sandbox=docker_backend)
    try:
        with pytest.raises(ReplayError, match=message):
            e.reset(options={"trajectory": 0, "turn": 0})
    finally:
        e.close()
    assert docker_backend.live_resources() == []


@pytest.mark.slow
def test_tests_that_do_not_run_are_a_clear_error_and_a_hanging_run_scores_0(traj, docker_backend):
    no_tests = _variant(traj, "no-tests", test_paths=["tests/does_not_exist.py"])
    not_a_bug = _variant(traj, "not-a-bug", fail_to_pass=traj["task"]["pass_to_pass"][:1])
    hang = _variant(traj, "hang", test_timeout_s=45)  # above the clean run even on a loaded machine
    # unwrapped: Gymnasium's passive checker cannot take a second reset after one that raised
    e = gym.make("PivotSWE-v0", trajectories=[no_tests, not_a_bug, hang], sandbox=docker_backend,
                 mode="episode").unwrapped
    try:
        n = sum(1 for m in traj["messages"] if m["role"] == "assistant")
        with pytest.raises(ReplayError, match="do not run"):
            e.reset(options={"trajectory": 0, "turn": 0})
        with pytest.raises(ReplayError, match="already pass"):
            e.reset(options={"trajectory": 1, "turn": 0})
        e.reset(options={"trajectory": 2, "turn": n - 1})
        # the agent makes importing the package hang: the test run times out, the episode scores 0
        e.step(bash("sed -i '1i import time; time.sleep(600)' toolz/__init__.py"))
        _, reward, terminated, _, info = e.step("I fixed it in " + traj["task"]["mutation"]["path"])
        assert terminated and reward == 0.0 and info["tests"]["tests_timed_out"] and not info["masked"]
    finally:
        e.close()
    assert docker_backend.live_resources() == []


@pytest.mark.slow
def test_paper_verifier_reads_tool_names_only(traj, docker_backend):
    e = gym.make("PivotSWE-v0", trajectories=[traj], sandbox=docker_backend, verifier="paper")
    try:
        k = _turn_of(traj, lambda name, a: a.get("command") == "str_replace")
        e.unwrapped.reset(options={"trajectory": 0, "turn": k})
        v = e.unwrapped.judge_actions([edit(command="str_replace", path="/testbed/x.py", old_str="a", new_str="b"),
                                       edit(command="view", path="/testbed"), "Done."])
        assert [x.reward for x in v] == [1.0, 0.0, 0.0]
    finally:
        e.close()
