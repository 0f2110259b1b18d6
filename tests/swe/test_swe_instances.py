"""SWE-bench instances to PivotSWE-v0 (issue 20): a local checkout becomes a single-commit image whose
tag hashes what it holds, snapshots follow the image's ID rather than its name, and an instance plus a
checkout becomes an episode-ready record in one call (pivot-ready with a demonstration), judged right:
gold fix 1, another correct fix 1, a fix that breaks another test 0, doing nothing 0.

The project is written here (a small clamp/percent library with a bug and its later fix), so the
tests need no network."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from pivot_envs.domains.swe.swebench_format import (
    record_from_instance,
    task_from_instance,
)
from pivot_envs.parsing import render_tool_call

BUGGY = textwrap.dedent('''\
    def clamp(x, lo, hi):
        """x limited to [lo, hi]."""
        if x < lo:
            return lo
        if x > hi:
            return lo
        return x


    def percent(part, whole):
        return 100.0 * part / whole
    ''')
GOLD = BUGGY.replace("    if x > hi:\n        return lo\n", "    if x > hi:\n        return hi\n")
ALTERNATIVE = BUGGY.replace('    if x < lo:\n        return lo\n    if x > hi:\n        return lo\n    return x\n',
                            "    return max(lo, min(x, hi))\n")
BREAKS_PERCENT = GOLD.replace("100.0 * part / whole", "100 * part // whole")
TESTS = textwrap.dedent('''\
    from mathbits import clamp, percent


    def test_inside():
        assert clamp(5, 0, 10) == 5


    def test_below():
        assert clamp(-3, 0, 10) == 0


    def test_above():
        assert clamp(42, 0, 10) == 10


    def test_percent():
        assert abs(percent(1, 3) - 33.3333) < 1e-3
    ''')
F2P = ["tests/test_mathbits.py::test_above"]
P2P = ["tests/test_mathbits.py::test_inside", "tests/test_mathbits.py::test_below",
       "tests/test_mathbits.py::test_percent"]


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.org", "GIT_COMMITTER_NAME": "dev",
           "GIT_COMMITTER_EMAIL": "dev@example.org", "PATH": "/usr/bin:/bin"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _project(root: Path, library: str = BUGGY) -> tuple[Path, str]:
    """A checkout whose base commit holds `library`, followed by a commit that fixes it (the history
    an agent must not see). Returns (checkout, base commit)."""
    (root / "mathbits").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "mathbits" / "__init__.py").write_text("from mathbits.core import clamp, percent\n")
    (root / "mathbits" / "core.py").write_text(library)
    (root / "tests" / "test_mathbits.py").write_text(TESTS)
    (root / ".gitignore").write_text("__pycache__/\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "clamp and percent")
    base = _git(root, "rev-parse", "HEAD")
    (root / "mathbits" / "core.py").write_text(GOLD)
    _git(root, "commit", "-q", "-am", "clamp: the upper bound returns hi (THE FIX)")
    return root, base


def _diff(old: str, new: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/mathbits/core.py",
                                        "b/mathbits/core.py"))


def _instance(base: str, iid: str = "mathbits__mathbits-1") -> dict:
    return {"instance_id": iid, "repo": "example/mathbits", "base_commit": base, "patch": _diff(BUGGY, GOLD),
            "test_patch": "", "problem_statement": "clamp(42, 0, 10) returns 0; it should return 10.",
            "FAIL_TO_PASS": json.dumps(F2P), "PASS_TO_PASS": json.dumps(P2P)}


def test_the_single_commit_tree_has_the_base_tree_and_no_history(tmp_path):
    """`repo_checkout=` copied the .git with it, so `git log --all` showed the fix."""
    from pivot_envs.images.swe.repos import single_commit_tree

    checkout, base = _project(tmp_path / "c")
    (checkout / "untracked.txt").write_text("not committed\n")
    new = single_commit_tree(checkout, base, tmp_path / "tree")
    assert _git(tmp_path / "tree", "log", "--all", "--format=%s") == "base: the instance's base commit, without history"
    assert (tmp_path / "tree" / "mathbits" / "core.py").read_text() == BUGGY
    assert not (tmp_path / "tree" / "untracked.txt").exists()
    assert new == _git(tmp_path / "tree", "rev-parse", "HEAD") != base
    assert single_commit_tree(checkout, base, tmp_path / "again") == new  # the id depends on the tree alone


@pytest.mark.docker
def test_checkout_image_tags_follow_the_checkout(docker_backend, tmp_path):
    """Tagged by the instance id alone, an image built from an earlier checkout was reused after the
    checkout changed (a stale image); now a different base tree gives a different image, holding its
    own files as one commit."""
    first, base1 = _project(tmp_path / "one")
    second, base2 = _project(tmp_path / "two", library=BUGGY.replace("x limited", "x kept"))
    t1 = task_from_instance(_instance(base1), repo_checkout=first)
    t2 = task_from_instance(_instance(base2), repo_checkout=second)
    assert t1["image"] != t2["image"] and t1["image"].startswith("pivotrl/swe-checkout-mathbits__mathbits-1:")
    assert t1["upstream_base_commit"] == base1 and t1["base_commit"] != base1
    for task, doc in ((t1, "x limited"), (t2, "x kept")):
        with docker_backend.create(task["image"], workdir="/testbed") as box:
            res = box.exec("git rev-list --all --count && git rev-parse HEAD && cat mathbits/core.py", timeout=60)
            assert res.stdout.splitlines()[:2] == ["1", task["base_commit"]], res.stdout  # one commit: no fix in sight
            assert doc in res.stdout
    # The fix commit after the base changes nothing the image holds: same tag, nothing rebuilt.
    (first / "README").write_text("later\n")
    _git(first, "add", "README")
    _git(first, "commit", "-q", "-m", "docs")
    assert task_from_instance(_instance(base1), repo_checkout=first)["image"] == t1["image"]


@pytest.mark.docker
def test_snapshots_of_an_image_rebuilt_under_the_same_tag_are_not_served(docker_backend, tmp_path):
    """The snapshot cache was keyed by the image's name: after a rebuild under the same tag, a reset
    in the same process served the old image's state (a correctness bug)."""
    from pivot_envs.images.build import DEFAULT_IMAGE, docker_build, image_id
    from pivot_envs.sandbox.cache import SnapshotCache

    tag = "pivotrl/test-stale-snapshot:latest"
    cache = SnapshotCache(docker_backend)
    built: list[str] = []

    def build(content: str) -> None:
        (tmp_path / "Dockerfile").write_text(f"FROM {DEFAULT_IMAGE}\nRUN echo {content} > /marker\n")
        docker_build(tmp_path, tag)
        built.append(image_id(tag) or "")

    def marker() -> str:
        snap = cache.state_at(image=tag, task_key="t", actions=[], workdir="/", prepare=lambda box: None,
                              apply=lambda box, action, i: None)
        with docker_backend.fork(snap) as box:
            return box.exec("cat /marker", timeout=30).stdout.strip()

    try:
        build("one")
        assert marker() == "one"
        build("two")
        assert marker() == "two"
    finally:
        cache.clear()
        subprocess.run(["docker", "rmi", "-f", tag, *built], capture_output=True, check=False, timeout=120)


@pytest.mark.docker
def test_listed_tests_the_image_does_not_run_are_reported_at_load(docker_backend, tmp_path):
    """A FAIL_TO_PASS test skipped in the image (its module is missing there) can never pass; it was
    silently required, so the instance could not be resolved. The first reset now says which."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.errors import ReplayError

    checkout, base = _project(tmp_path / "c")
    _git(checkout, "checkout", "-q", "-b", "with-fast-test", base)  # the bug is still there
    (checkout / "tests" / "test_fast.py").write_text(
        "import pytest\n\nfast = pytest.importorskip('numpy_is_not_in_this_image')\n\n\n"
        "def test_vectorised():\n    assert fast.clip(42, 0, 10) == 10\n")
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-q", "-m", "a test needing a module the image lacks")
    instance = _instance(_git(checkout, "rev-parse", "HEAD"), iid="mathbits__mathbits-2")
    instance["FAIL_TO_PASS"] = json.dumps([*F2P, "tests/test_fast.py::test_vectorised"])
    env = gym.make("PivotSWE-v0", trajectories=[record_from_instance(instance, repo_checkout=checkout)],
                   sandbox=docker_backend, mode="episode")
    try:
        with pytest.raises(ReplayError, match=r"1 listed test\(s\) do not run .*tests/test_fast.py::test_vectorised"):
            env.reset(options={"trajectory": 0, "turn": 0})
    finally:
        env.close()


def _bash(cmd: str) -> str:
    return render_tool_call("bash", {"command": cmd})


def _write_core(text: str) -> str:
    return _bash(f"cat > mathbits/core.py <<'PY'\n{text}PY")


def _episode(env, actions: list[str]) -> tuple[float, list[dict]]:
    """Run `actions` then submit; the reward and the conversation after the user's message."""
    obs, _ = env.reset(options={"trajectory": 0, "turn": 0})
    reward = 0.0
    for action in [*actions, "I fixed clamp's upper bound."]:
        obs, reward, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return float(reward), obs["messages"][2:]


def _walkthrough(backend, instance: dict, checkout: Path, *, explore: str, fixes: dict[str, str]) -> dict:
    """The README's SWE-bench walk-through: instance + checkout -> episode record -> a reward per fix
    (plus doing nothing); the gold episode's own messages (`explore`, then the gold fix) -> pivot
    record -> a verdict per fix at the edit turn. `fixes`: name -> action, "gold" first."""
    import gymnasium as gym

    import pivot_envs  # noqa: F401  (registers the envs)

    record = record_from_instance(instance, repo_checkout=checkout)  # one call: builds the image
    assert record["task"]["episode_only"] and record["messages"][-1]["role"] == "assistant"
    env = gym.make("PivotSWE-v0", trajectories=[record], sandbox=backend, mode="episode")
    try:
        episode = {name: _episode(env, [action])[0] for name, action in fixes.items()}
        episode["nothing"] = _episode(env, [])[0]
        _, demonstration = _episode(env, [explore, fixes["gold"]])
    finally:
        env.close()
    assert [m["role"] for m in demonstration] == ["assistant", "tool", "assistant", "tool", "assistant"]
    pivot_record = record_from_instance(instance, repo_checkout=checkout, demonstration=demonstration)
    assert "episode_only" not in pivot_record["task"] and pivot_record["task"]["image"] == record["task"]["image"]
    env = gym.make("PivotSWE-v0", trajectories=[pivot_record], sandbox=backend)
    try:
        env.reset(options={"trajectory": 0, "turn": 1})  # the edit turn
        verdicts = env.unwrapped.judge_actions([*fixes.values(), _bash("ls")])
    finally:
        env.close()
    pivot = {name: v.reward for name, v in zip([*fixes, "nothing"], verdicts)}
    return {"episode": episode, "pivot": pivot, "demonstration": demonstration,
            "reasons": [v.reason for v in verdicts]}


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1200)
def test_walkthrough_instance_and_checkout_to_episode_and_pivot_verdicts(docker_backend, tmp_path):
    """The walk-through on the small project written here."""
    from pivot_envs.sandboxed_env import close_shared_sandboxes

    checkout, base = _project(tmp_path / "mathbits")
    try:
        got = _walkthrough(docker_backend, _instance(base), checkout, explore=_bash("grep -n 'return lo' mathbits/core.py"),
                           fixes={"gold": _write_core(GOLD), "alternative": _write_core(ALTERNATIVE),
                                  "breaks percent": _write_core(BREAKS_PERCENT)})
    finally:
        close_shared_sandboxes()  # releases the snapshots every env of this process shared
    want = {"gold": 1.0, "alternative": 1.0, "breaks percent": 0.0, "nothing": 0.0}
    assert got["episode"] == want and got["pivot"] == want, got["reasons"]
    assert "6:        return lo" in got["demonstration"][1]["content"]  # the real output of the grep


# ----------------------------------------------------------------------------- a real project: six 1.17.0

# `six.add_metaclass`'s body as released; the instances below break one part of it and fix it again.
SIX_BLOCK = """        slots = orig_vars.get('__slots__')
        if slots is not None:
            if isinstance(slots, str):
                slots = [slots]
            for slots_var in slots:
                orig_vars.pop(slots_var)
        orig_vars.pop('__dict__', None)
        orig_vars.pop('__weakref__', None)
        if hasattr(cls, '__qualname__'):
            orig_vars['__qualname__'] = cls.__qualname__
"""
_STR_SLOTS = "            if isinstance(slots, str):\n                slots = [slots]\n"
_QUALNAME = "        if hasattr(cls, '__qualname__'):\n            orig_vars['__qualname__'] = cls.__qualname__\n"
SIX_CASES = {
    # bug: a string __slots__ is iterated letter by letter (KeyError 'a')
    "benjaminp__six-string-slots": {
        "bug": SIX_BLOCK.replace(_STR_SLOTS, ""),
        "statement": "add_metaclass fails with KeyError: 'a' on a class whose __slots__ is a single string like 'ab'.",
        "fail_to_pass": ["test_six.py::test_add_metaclass"],
        "pass_to_pass": ["test_six.py::test_add_metaclass_nested", "test_six.py::test_with_metaclass",
                         "test_six.py::test_int2byte"],
        "alternative": SIX_BLOCK.replace(_STR_SLOTS + "            for slots_var in slots:\n",
                                         "            for slots_var in ((slots,) if isinstance(slots, str) else slots):\n"),
        "breaking": SIX_BLOCK.replace(_QUALNAME, ""),  # fixes the slots, loses nested __qualname__
    },
    # bug: the class made by add_metaclass loses its __qualname__ (nested classes)
    "benjaminp__six-qualname": {
        "bug": SIX_BLOCK.replace(_QUALNAME, ""),
        "statement": "A nested class decorated with add_metaclass gets __qualname__ 'B' instead of 'f.<locals>.A.B'.",
        "fail_to_pass": ["test_six.py::test_add_metaclass_nested"],
        "pass_to_pass": ["test_six.py::test_add_metaclass", "test_six.py::test_with_metaclass",
                         "test_six.py::test_int2byte"],
        "alternative": SIX_BLOCK.replace(_QUALNAME, "        orig_vars['__qualname__'] = getattr(cls, '__qualname__', "
                                                    "cls.__name__)\n"),
        "breaking": SIX_BLOCK.replace("        orig_vars.pop('__dict__', None)\n", ""),  # breaks test_add_metaclass
    },
}


def _six_checkout(root: Path) -> Path:
    """six 1.17.0 from its PyPI sdist (cached like the shipped repositories' sdists) as a git checkout;
    each instance is a branch: a bug commit (its base) and the fix after it."""
    import tarfile

    from pivot_envs.images.swe.repos import RepoSpec, fetch_sdist

    sdist = fetch_sdist(RepoSpec("six", "1.17.0", (".",), ("test_six.py",), "benjaminp/six"))
    with tarfile.open(sdist) as tar:
        tar.extractall(root.parent / "sdist", filter="data")
    shutil.copytree(root.parent / "sdist" / "six-1.17.0", root)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "six 1.17.0")
    return root


def _six_instance(checkout: Path, iid: str, case: dict) -> dict:
    upstream = (checkout / "six.py").read_text()
    assert upstream.count(SIX_BLOCK) == 1
    _git(checkout, "checkout", "-q", "-b", iid, "main")
    (checkout / "six.py").write_text(upstream.replace(SIX_BLOCK, case["bug"]))
    _git(checkout, "commit", "-q", "-am", "a bug")
    base = _git(checkout, "rev-parse", "HEAD")
    patch = subprocess.run(["git", "diff", "HEAD", "main", "--", "six.py"], cwd=checkout, check=True,
                           capture_output=True, text=True).stdout  # unstripped: a hunk may end in a blank line
    (checkout / "six.py").write_text(upstream)
    _git(checkout, "commit", "-q", "-am", "the fix")
    _git(checkout, "checkout", "-q", "main")
    return {"instance_id": iid, "repo": "benjaminp/six", "base_commit": base, "patch": patch, "test_patch": "",
            "problem_statement": case["statement"], "FAIL_TO_PASS": json.dumps(case["fail_to_pass"]),
            "PASS_TO_PASS": json.dumps(case["pass_to_pass"]), "version": "1.17.0"}


def _six_edit(case: dict, block: str) -> str:
    return render_tool_call("str_replace_editor", {"command": "str_replace", "path": "/testbed/six.py",
                                                   "old_str": case["bug"], "new_str": block})


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_walkthrough_on_instances_of_a_real_project(docker_backend, tmp_path):
    """Issue 20's acceptance on a small real PyPI project other than the five shipped ones: two
    SWE-bench-format instances of six 1.17.0 (bugs in `add_metaclass`, fixed after the base commit).
    Gold 1, a different correct fix 1, a fix that breaks another test 0, doing nothing 0, in episode
    and pivot mode."""
    from pivot_envs.sandboxed_env import close_shared_sandboxes

    checkout = _six_checkout(tmp_path / "six")
    want = {"gold": 1.0, "alternative": 1.0, "breaking": 0.0, "nothing": 0.0}
    try:
        for iid, case in SIX_CASES.items():
            instance = _six_instance(checkout, iid, case)
            got = _walkthrough(docker_backend, instance, checkout, explore=_bash("grep -n 'def add_metaclass' six.py"),
                               fixes={"gold": _six_edit(case, SIX_BLOCK),
                                      "alternative": _six_edit(case, case["alternative"]),
                                      "breaking": _six_edit(case, case["breaking"])})
            print(iid, got["episode"], got["pivot"])
            assert got["episode"] == want and got["pivot"] == want, (iid, got["reasons"])
    finally:
        close_shared_sandboxes()
