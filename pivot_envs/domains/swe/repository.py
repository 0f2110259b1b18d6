"""The repository inside a SWE sandbox: putting it at the instance's base commit, measuring what an
action did to it (the diff against the base, normalised), running its tests and grading them.

Normalised diff: every change of the working tree against `base_commit` - tracked and untracked
files, staged or not, committed or not - as `git diff --full-index` of a throwaway index, so neither
the real index nor HEAD of the sandbox matters and the same content always gives the same text.
`__pycache__`, `*.pyc` and `.pytest_cache` are excluded. A deleted repository measures as the
sentinel `REPOSITORY_MISSING`.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Callable
from typing import Any

from pivot_envs.domains.swe.testlog import PASSING, parse_pytest_log
from pivot_envs.domains.swe.tools import install_editor_command
from pivot_envs.errors import ReplayError, SandboxError
from pivot_envs.sandbox.base import ExecResult, Sandbox

REPOSITORY_MISSING = "<the repository /testbed is missing or is no git repository>"
PER_TEST_TIMEOUT_S = 20.0
# One commit, the buggy tree (see generator.FRESH_HISTORY): no history that holds the fix.
FRESH_HISTORY = ("rm -rf .git && git init -q -b main "
                 "&& printf '__pycache__/\\n*.pyc\\n.pytest_cache/\\n' > .git/info/exclude "
                 "&& git add -A && git commit -q -m 'Initial commit' && git rev-parse HEAD")
_DIFF_OK = "pivotrl-diff-follows"
_DIFF = ("cd {workdir} 2>/dev/null && git rev-parse --git-dir >/dev/null 2>&1 || {{ echo '{missing}'; exit 0; }}; "
         f"echo {_DIFF_OK}; "
         "idx=$(mktemp) && cp .git/index \"$idx\" 2>/dev/null; "
         "GIT_INDEX_FILE=\"$idx\" git add -A . >/dev/null 2>&1; "
         "GIT_INDEX_FILE=\"$idx\" git -c core.quotepath=off diff --cached --no-color --no-ext-diff --full-index "
         "--no-renames {base} 2>&1; rc=$?; rm -f \"$idx\"; exit $rc")

Exec = Callable[..., ExecResult]  # (box, command, timeout_s, workdir=None) -> ExecResult


def checkout_instance(box: Sandbox, task: dict[str, Any], exec_fn: Exec) -> None:
    """Install the editor and put /testbed at the instance's base commit. Our instances apply their
    `bug_patch` to the clean tree and make it the only commit; others check out `base_commit`.
    Raises ReplayError (the instance is unusable) when the patch does not apply or the commit id
    does not come out as the instance says."""
    iid = task.get("instance_id", "?")
    res = exec_fn(box, install_editor_command(), 60)
    if not res.ok:
        raise ReplayError(f"instance {iid}: could not install the editor tool: {res.stderr[-300:]}")
    bug = task.get("bug_patch") or ""
    if bug:
        box.write_file("/tmp/pivotrl-bug.patch", bug)
        res = exec_fn(box, "git apply --whitespace=nowarn /tmp/pivotrl-bug.patch && rm -f /tmp/pivotrl-bug.patch && "
                      + FRESH_HISTORY, 120)
        if not res.ok:
            raise ReplayError(f"instance {iid}: its bug_patch does not apply to the image's /testbed "
                              f"({(res.stdout + res.stderr).strip()[-400:]}); rebuild the image or regenerate "
                              f"the instance")
        head = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    else:
        res = exec_fn(box, f"git checkout -q -f {shlex.quote(task['base_commit'])} && git rev-parse HEAD", 120)
        if not res.ok:
            raise ReplayError(f"instance {iid}: base_commit {task['base_commit']} cannot be checked out in "
                              f"{task.get('image')}: {(res.stdout + res.stderr).strip()[-300:]}")
        head = res.stdout.strip()
    if head != task["base_commit"]:
        raise ReplayError(f"instance {iid}: the repository is at {head or '?'} after setup, but base_commit is "
                          f"{task['base_commit']}: the image does not hold this instance's sources")


def repo_diff(box: Sandbox, task: dict[str, Any], exec_fn: Exec) -> str:
    """The normalised diff of /testbed against the base commit (module docstring)."""
    cmd = _DIFF.format(workdir=task.get("workdir", "/testbed"), missing=REPOSITORY_MISSING,
                       base=shlex.quote(task["base_commit"]))
    res = exec_fn(box, cmd, 120, "/")
    if res.timed_out:
        raise SandboxError("measuring the repository diff timed out")
    if res.stdout.startswith(REPOSITORY_MISSING):
        return REPOSITORY_MISSING
    if not res.stdout.startswith(_DIFF_OK + "\n"):
        # docker cannot even start a command once the container's working directory is gone
        if "chdir to cwd" in res.stdout + res.stderr:
            return REPOSITORY_MISSING
        raise SandboxError(f"measuring the repository diff failed (exit {res.exit_code}): "
                           f"{(res.stdout + res.stderr)[-300:]}")
    return res.stdout[len(_DIFF_OK) + 1:]


def test_command(task: dict[str, Any], files: list[str] | None = None) -> str:
    paths = files if files is not None else task.get("test_paths") or []
    return (f"python3 -m pytest -rA -q -p no:cacheprovider --color=no --tb=no --timeout={PER_TEST_TIMEOUT_S:g} "
            + " ".join(shlex.quote(p) for p in paths))


@dataclasses.dataclass(frozen=True)
class TestRun:
    outcomes: dict[str, str]
    timed_out: bool
    exit_code: int
    tail: str

    def status(self, test: str) -> str:
        return self.outcomes.get(test, "MISSING")


def run_tests(box: Sandbox, task: dict[str, Any], exec_fn: Exec) -> TestRun:
    """Apply the instance's test_patch (if any) and run the test files its FAIL_TO_PASS / PASS_TO_PASS
    name. A run that hangs past `test_timeout_s` is a result (timed_out), not an error."""
    if task.get("test_patch"):
        box.write_file("/tmp/pivotrl-test.patch", task["test_patch"])
        exec_fn(box, "git apply --whitespace=nowarn /tmp/pivotrl-test.patch; rm -f /tmp/pivotrl-test.patch", 60)
    res = exec_fn(box, f"cd {task.get('workdir', '/testbed')} && " + test_command(task),
                  float(task.get("test_timeout_s", 180.0)))
    text = res.stdout + res.stderr
    return TestRun(parse_pytest_log(text), res.timed_out, res.exit_code, text[-2000:])


def check_tests_run(box: Sandbox, task: dict[str, Any], exec_fn: Exec) -> None:
    """At the base commit the instance's tests must run, every FAIL_TO_PASS test must fail and the
    PASS_TO_PASS tests must pass; else the instance is unusable (ReplayError saying which)."""
    iid = task.get("instance_id", "?")
    run = run_tests(box, task, exec_fn)
    if run.timed_out:
        raise ReplayError(f"instance {iid}: its tests run past test_timeout_s={task.get('test_timeout_s')} s at the "
                          f"base commit; raise the limit or fix the instance")
    listed = task["fail_to_pass"] + task["pass_to_pass"]
    missing = [t for t in listed if t not in run.outcomes]
    if len(missing) == len(listed):
        raise ReplayError(f"instance {iid}: its tests do not run (none of the {len(listed)} listed tests is in the "
                          f"output of `{test_command(task)}`): {run.tail[-400:]}")
    # A listed test the image's interpreter does not run (skipped for a missing module, a wrong node id)
    # can never pass: as a FAIL_TO_PASS test it made the instance silently unsolvable.
    absent = [t for t in listed if run.status(t) in ("MISSING", "SKIPPED")]
    if absent:
        raise ReplayError(f"instance {iid}: {len(absent)} listed test(s) do not run in {task.get('image')} "
                          f"(not collected or skipped, e.g. for a module the image lacks): {absent[:5]}; install what "
                          f"they need in the image or drop them from FAIL_TO_PASS / PASS_TO_PASS")
    passing_f2p = [t for t in task["fail_to_pass"] if run.status(t) in PASSING]
    failing_p2p = [t for t in task["pass_to_pass"] if run.status(t) not in PASSING]
    if passing_f2p or failing_p2p:
        raise ReplayError(f"instance {iid}: at the base commit {len(passing_f2p)} FAIL_TO_PASS test(s) already pass "
                          f"({passing_f2p[:2]}) and {len(failing_p2p)} PASS_TO_PASS test(s) fail ({failing_p2p[:2]}): "
                          f"the image or the instance is wrong")


def grade(task: dict[str, Any], run: TestRun) -> tuple[bool, dict[str, Any]]:
    """SWE-bench's resolution rule: every FAIL_TO_PASS test passes and every PASS_TO_PASS test still
    passes. Returns (resolved, report)."""
    f2p_failed = [t for t in task["fail_to_pass"] if run.status(t) not in PASSING]
    p2p_failed = [t for t in task["pass_to_pass"] if run.status(t) not in PASSING]
    report = {"fail_to_pass_passed": len(task["fail_to_pass"]) - len(f2p_failed),
              "fail_to_pass": len(task["fail_to_pass"]),
              "pass_to_pass_passed": len(task["pass_to_pass"]) - len(p2p_failed),
              "pass_to_pass": len(task["pass_to_pass"]),
              "still_failing": f2p_failed[:5], "broken": p2p_failed[:5], "tests_timed_out": run.timed_out}
    return (not f2p_failed and not p2p_failed and not run.timed_out), report


def outcome_delta(before: TestRun, after: TestRun) -> dict[str, str]:
    """The tests whose status changed from `before` to `after`, with their new status."""
    keys = set(before.outcomes) | set(after.outcomes)
    return {t: after.status(t) for t in sorted(keys) if after.status(t) != before.status(t)}


def dumps_delta(delta: dict[str, str], limit: int = 3) -> str:
    items = list(delta.items())[:limit]
    return json.dumps(dict(items)) + (f" (+{len(delta) - limit} more)" if len(delta) > limit else "")
