"""SWE verifiers: is a sampled action functionally equivalent to the demonstration's at turn k?

`SWEVerifier` ("execution", default) runs the sampled action and the demonstration's in two forks of
the live state and compares what they did. The rule:

1. **State-changing reference** (its normalised repository diff against the base commit differs from
   the state's; see repository.py): the action must change the repository too, and either
   - leave the *same* normalised diff ("same repository"), or
   - change the *same tests' outcomes the same way*: the test files of the instance run in both forks
     and, against the outcomes in the state itself, the set of tests whose status changed and their
     new status are identical. A different fix of the bug is equivalent; an edit that makes the
     failing test pass by breaking another test is not (the broken test changed outcome only there).
     When the reference's edit changes no test outcome (a refactor, a step towards a fix), only the
     same diff counts.
2. **Read-only reference** (view, grep, ls, running tests: the diff is unchanged): the action must
   leave the repository unchanged as well, and return the information the reference returned:
   - when the reference's output is a pytest report, every test it reports must be reported by the
     action with the same status (any flags, any selection that includes those tests);
   - otherwise at least `info_recall` (0.9) of the reference's information lines must appear in
     the action's output. Information lines are the output's non-blank lines with line-number
     prefixes (`cat -n`, `grep -n`), `path:` prefixes (`grep -r`), run times and memory addresses
     removed, and decoration lines (`=====`) dropped: `sed -n 10,20p f`, the editor's `view` of the
     same range and `grep -n` of a line in it give the same information.
3. **Plain-message reference** (the demonstration submits): the action must be a message too, the
   instance must be resolved in the state (FAIL_TO_PASS pass, PASS_TO_PASS still pass) and the message
   must name a file the fix changed (so "Done." where the demonstration reports its fix earns 0).

An action that cannot run (unknown tool, bad arguments) or deletes the repository is wrong (reward
0, with the reason); a fork that fails is infrastructure (masked).

`PaperVerifier` ("paper") is the paper's SWE rule: tool-call names only, mapped to coarse
categories (edit, read, bash, finish); arguments and effects are not looked at. Our editor is one
tool whose `command` plays the part of SWE-agent's tool names (view = read, the rest = edit).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pivot_envs.domains.swe.repository import (
    REPOSITORY_MISSING,
    TestRun,
    dumps_delta,
    outcome_delta,
)
from pivot_envs.domains.swe.testlog import parse_pytest_log, strip_timing
from pivot_envs.domains.swe.tools import check_call
from pivot_envs.errors import SandboxError
from pivot_envs.memo import OnceMemo
from pivot_envs.parsing import ParsedAction
from pivot_envs.trajectory import ToolCall, tool_calls_of
from pivot_envs.verdict import NoSettings, Verdict

_LINE_NO = re.compile(r"^\s*\d+(\t|:|-)\s?")
_PATH_PREFIX = re.compile(r"^[\w./-]+\.\w+:(\d+[:-])?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_EDITOR_HEADER = re.compile(r"^Here's the (result of running `cat -n` on|files and directories)")


def information_lines(text: str) -> set[str]:
    """The normalised information lines of a tool output (module docstring, rule 2)."""
    out = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _EDITOR_HEADER.match(line) or set(line) <= set("=-_*~ .[]%0123456789"):
            continue
        line = _PATH_PREFIX.sub("", _LINE_NO.sub("", line))
        line = _ADDRESS.sub("0x?", strip_timing(line)).strip()
        if line:
            out.add(line)
    return out


@dataclasses.dataclass
class Effect:
    """What an action did in a fork of the state."""

    diff: str
    output: str
    tests: TestRun | None = None


class SWEVerifier:
    """Execute both actions in forks of the state at turn k and compare effects (module docstring)."""

    name = "execution"

    @classmethod
    def for_env(cls, env: Any) -> SWEVerifier:
        """The factory `EnvSpec.verifiers` names: the env's `info_recall`."""
        return cls(env, info_recall=env.info_recall)

    def __init__(self, env: Any, info_recall: float = 0.9):
        if not 0 < info_recall <= 1:
            raise ValueError(f"info_recall must be in (0, 1], got {info_recall}")
        self.env = env
        self.info_recall = info_recall
        self._cache: OnceMemo[Any] = OnceMemo()  # per state: computed once, also under parallel judging

    # ------------------------------------------------------------------ measurements (cached per state)
    def _cached(self, key: tuple[str, ...], compute: Any) -> Any:
        return self._cache.get(key, compute)

    def _measure(self, state: Any, action: ParsedAction | dict | None, want_tests: Any) -> Effect:
        """Fork the state, run `action` (None = nothing), measure the diff; run the tests when
        `want_tests(diff)` says so."""
        env, traj = self.env, state.traj
        with env.backend.fork(state.snapshot) as box:
            outputs = []
            if action is not None:
                for res in env.run_calls(box, traj, action):
                    env.costs.rollout_turns += 1
                    outputs.append(res.content)
            diff = env.repo_diff(box, traj)
            tests = env.run_tests(box, traj) if want_tests(diff) else None
            return Effect(diff, "\n".join(outputs), tests)

    def _base(self, state: Any) -> Effect:
        return self._cached(("base", state.key), lambda: self._measure(state, None, lambda d: False))

    def _base_tests(self, state: Any) -> TestRun:
        return self._cached(("base_tests", state.key),
                            lambda: self._measure(state, None, lambda d: True).tests)

    def _reference(self, state: Any, reference: dict) -> Effect:
        base = self._base(state)
        key = ("ref", state.key, repr([(c.name, sorted(c.arguments.items())) for c in tool_calls_of(reference)]))
        return self._cached(key, lambda: self._measure(state, reference, lambda d: d != base.diff))

    # ------------------------------------------------------------------ judge
    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.error:
            return Verdict.wrong(f"unusable action: {action.error}", self.name)
        ref_calls = tool_calls_of(reference)
        if not ref_calls:
            return self._judge_submit(state, action, reference)
        if not action.tool_calls:
            return Verdict.wrong("the demonstration calls a tool here; the action is a plain message", self.name)
        for call in action.tool_calls:
            why = check_call(call)
            if why:
                return Verdict.wrong(why, self.name)
        try:
            base = self._base(state)
            ref = self._reference(state, reference)
        except SandboxError as e:
            return Verdict.infra("sandbox_error", f"running the reference failed: {e}", self.name)
        if ref.diff == REPOSITORY_MISSING:
            return Verdict.infra("verifier_error", "the demonstration's action deletes the repository", self.name)
        ref_changes = ref.diff != base.diff
        try:
            got = self._measure(state, action, lambda d: ref_changes and d not in (ref.diff, base.diff, REPOSITORY_MISSING))
        except SandboxError as e:
            return Verdict.infra("sandbox_error", f"running the action failed: {e}", self.name)
        if got.diff == REPOSITORY_MISSING:
            return Verdict.wrong("the action deletes the repository (/testbed is gone or no longer a git repository)",
                                 self.name)
        if ref_changes:
            return self._judge_edit(state, base, ref, got)
        if got.diff != base.diff:
            return Verdict.wrong("the demonstration only reads here; the action changes the repository", self.name)
        return self._judge_information(ref, got)

    def _judge_edit(self, state: Any, base: Effect, ref: Effect, got: Effect) -> Verdict:
        if got.diff == base.diff:
            return Verdict.wrong("the demonstration changes the repository here; the action leaves it unchanged",
                                 self.name)
        if got.diff == ref.diff:
            return Verdict.correct("same repository diff as the demonstration", self.name)
        try:
            before = self._base_tests(state)
        except SandboxError as e:
            return Verdict.infra("sandbox_error", f"running the tests of the state failed: {e}", self.name)
        assert ref.tests is not None and got.tests is not None
        ref_delta, got_delta = outcome_delta(before, ref.tests), outcome_delta(before, got.tests)
        if not ref_delta:
            return Verdict.wrong("a different diff, and the demonstration's edit changes no test outcome to compare "
                                 "by: only the same diff counts here", self.name)
        if got.tests.timed_out:
            return Verdict.wrong("the tests hang after the action's edit", self.name)
        if got_delta == ref_delta:
            return Verdict.correct(f"a different diff that changes the same {len(ref_delta)} test outcome(s) the same "
                                   f"way", self.name, tests_changed=len(ref_delta))
        missing = {t: s for t, s in ref_delta.items() if got_delta.get(t) != s}
        extra = {t: s for t, s in got_delta.items() if t not in ref_delta}
        why = []
        if missing:
            why.append(f"not the demonstration's test changes {dumps_delta(missing)}")
        if extra:
            why.append(f"changes other tests {dumps_delta(extra)}")
        return Verdict.wrong("a different edit with other test outcomes: " + "; ".join(why), self.name,
                             missing=len(missing), extra=len(extra))

    def _judge_information(self, ref: Effect, got: Effect) -> Verdict:
        ref_tests = parse_pytest_log(ref.output)
        if ref_tests:
            got_tests = parse_pytest_log(got.output)
            differ = [t for t, s in ref_tests.items() if got_tests.get(t) != s]
            if not differ:
                return Verdict.correct(f"the repository is unchanged and the action reports the same {len(ref_tests)} "
                                       f"test outcome(s)", self.name)
        ref_lines = information_lines(ref.output)
        if not ref_lines:
            return Verdict.correct("the repository is unchanged and the demonstration's output carries no "
                                   "information to match", self.name)
        got_lines = information_lines(got.output)
        recall = len(ref_lines & got_lines) / len(ref_lines)
        if recall >= self.info_recall:
            return Verdict.correct(f"the repository is unchanged and the action returns the demonstration's "
                                   f"information (recall {recall:.2f})", self.name, recall=recall)
        return Verdict.wrong(f"the action returns {recall:.0%} of the demonstration's information lines "
                             f"(needs {self.info_recall:.0%})", self.name, recall=recall)

    def _judge_submit(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.tool_calls:
            return Verdict.wrong("the demonstration submits here; the action calls a tool", self.name)
        graded = self.env.grade_state(state)
        if graded is None:
            return Verdict.infra("sandbox_error", "could not run the tests to check the submission", self.name)
        resolved, report = graded
        if not resolved:
            return Verdict.wrong("the agent submits but the instance is not resolved in this state", self.name, **report)
        try:
            changed = self._changed_files(self._base(state).diff)
        except SandboxError as e:
            return Verdict.infra("sandbox_error", f"measuring the repository failed: {e}", self.name)
        text = action.content
        if changed and not any(p in text or p.rsplit("/", 1)[-1] in text for p in changed):
            return Verdict.wrong(f"the instance is resolved but the message does not say what was fixed (it names "
                                 f"none of the changed files {changed[:3]})", self.name)
        return Verdict.correct("the agent submits, the instance is resolved and the message names the fix", self.name)

    @staticmethod
    def _changed_files(diff: str) -> list[str]:
        return re.findall(r"^diff --git a/(\S+) ", diff, flags=re.MULTILINE)


def category(call: ToolCall) -> str:
    """The paper's coarse SWE category of a tool call, from its name (the editor's command)."""
    if call.name == "str_replace_editor":
        return "read" if call.arguments.get("command") == "view" else "edit"
    return call.name


class PaperVerifier(NoSettings):
    """Tool-call names only (see module docstring); a message matches a message ("finish")."""

    name = "paper"

    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.error:
            return Verdict.wrong(f"output does not parse: {action.error}", self.name)
        want = [category(c) for c in tool_calls_of(reference)] or ["finish"]
        got = [category(c) for c in action.tool_calls] or ["finish"]
        if want == got:
            return Verdict.correct(f"same tool categories {got}", self.name)
        return Verdict.wrong(f"tool categories {got} differ from the demonstration's {want}", self.name)
