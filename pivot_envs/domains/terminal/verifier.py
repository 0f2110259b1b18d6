"""Terminal verifiers: is a sampled bash action functionally equivalent to the demonstration's?

`ExecutionVerifier` (default, "execution") runs the sampled command(s) in a fork of the live state
at turn k, and the demonstration's command(s) in two more forks, and compares their effects
(measured by `pivot_envs.effects`):

- file-system effect: the manifest of every directory the backend persists (local: the workdir,
  /tmp and /root; docker: the workdir and the system's writable dirs) or the task's `state_roots`:
  every path, its kind, permission bits and content hash. Modification times are ignored; archives
  (.tar*, .tgz, .zip, .gz) are compared by their members, not their bytes (which embed creation
  times). Inside git repositories the object store is not compared byte for byte (commit ids depend
  on messages and dates); each repository is summarised by HEAD's tree, the branch -> tree map, the
  commit count, `git status --porcelain` and the index (path, mode, blob id of each entry; not the
  stat data);
- exit status: every command's, not only the last: the failing statuses in order must be the same
  (a timeout is its own status; successful commands do not count, so `a && b` as one call and as
  two calls agree);
- output: stdout after normalisation (trailing whitespace of each line and leading/trailing blank
  lines dropped); stderr is diagnostics and is not compared.

What differs between the two demonstration runs (random values, temp names, commit ids, present
timestamps, line order) is left out of the comparison by the rules of `pivot_envs.reference_runs`,
so a non-deterministic demonstration still matches itself; an action identical to the
demonstration (after `normalise_commands`) is equivalent without running anything.

Who is to blame: an action that fills the sandbox's disk quota scores 0; a fork that could not start
or was killed from outside (`SandboxLostError`) is the infrastructure's (masked); when the action's
fork raises otherwise (its sandbox stopped answering) a fresh fork of the same state is probed: if it
works, the action broke its sandbox (reward 0, `details["broke_sandbox"]`), else the failure is the
infrastructure's (masked).

Equivalent = all three equal. When the demonstration's turn is a plain message (the agent says it is
done), "any message" must not score 1 (the paper's known reward hack). `message_check`:
- "content" (default): the task's test passes in the state at turn k (stopping is right only when
  the work is done) AND the message reports it: it recalls at least `message_overlap` (0.3) of the
  demonstration message's content words (numbers, file names, words of 3+ letters);
- "task_state": the test alone; "any": the paper's behaviour.

`PaperVerifier` ("paper") is the paper's non-executing rule: finished-flag (message vs command) must
match; difflib similarity of the command strings >= 0.95 passes; otherwise an optional judge callable
decides (no judge: 0). `ExactVerifier` ("exact") is the strict-match ablation, the rule every domain
shares (pivot_envs/verifiers/rules.py; imported here for the terminal's name).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

from pivot_envs.bash_tool import bash_commands
from pivot_envs.effects import Outcome
from pivot_envs.errors import SandboxError, SandboxLostError
from pivot_envs.memo import OnceMemo
from pivot_envs.parsing import ParsedAction
from pivot_envs.reference_runs import TEXT_LIMIT, Mismatch, ReferenceEffect, timed_out
from pivot_envs.sandbox.base import Sandbox
from pivot_envs.trajectory import tool_calls_of
from pivot_envs.verdict import NoSettings, Verdict
from pivot_envs.verifiers.rules import PAPER_SIMILARITY, ExactVerifier, similarity  # noqa: F401  (ExactVerifier re-exported: the terminal's "exact")

_STOP_WORDS = frozenset(["the", "and", "for", "are", "was", "were", "with", "that", "this", "from", "into", "have", "has", "had", "all", "any", "its", "not", "but", "you", "your", "can", "will", "been", "there", "their", "them", "then", "than", "each", "done", "task"])


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry content: numbers, names with dots/slashes, words of 3+ letters."""
    words = re.findall(r"[A-Za-z0-9_./-]+", text.lower())
    return {w.strip("./-") for w in words
            if (len(w.strip("./-")) >= 3 or w.isdigit()) and w.strip("./-") not in _STOP_WORDS}


def message_recall(message: str, reference: str) -> float:
    """Share of the reference's content words that the message also contains (1.0 if it has none)."""
    ref = content_words(reference)
    return len(ref & content_words(message)) / len(ref) if ref else 1.0


def read_text(box: Sandbox, path: str) -> str | None:
    """The content of `path` in `box` as text, or None when it is not small UTF-8 text."""
    try:
        data = box.read_file(path)
    except (OSError, SandboxError):
        return None
    if len(data) > TEXT_LIMIT:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def normalise_commands(cmds: list[str]) -> list[str]:
    """Commands as the identical-action shortcut compares them (surrounding whitespace dropped)."""
    return [c.strip() for c in cmds]


class ExecutionVerifier:
    """Execute both actions in forks of the state at turn k and compare effects (module docstring).

    Args:
        env: the `SandboxedEnv` whose states are judged.
        message_check, message_overlap: how a plain message is judged where the demonstration stops.
        identical_shortcut: an action whose commands equal the demonstration's (after
            `normalise_commands`) is equivalent without running anything.
        reference_runs: 2 (default) runs the demonstration in two forks and leaves what differs
            between them out of the comparison (`pivot_envs.reference_runs`); 1 runs it once and
            compares everything (a non-deterministic demonstration then fails against itself).
    """

    name = "execution"

    @classmethod
    def for_env(cls, env: Any) -> ExecutionVerifier:
        """The factory `EnvSpec.verifiers` names: the env's message settings."""
        return cls(env, message_check=env.message_check, message_overlap=env.message_overlap)

    def __init__(self, env: Any, message_check: str = "content", message_overlap: float = 0.3,
                 identical_shortcut: bool = True, reference_runs: int = 2):
        if message_check not in ("content", "task_state", "any"):
            raise ValueError(f"message_check must be 'content', 'task_state' or 'any', got {message_check!r}")
        if reference_runs not in (1, 2):
            raise ValueError(f"reference_runs must be 1 or 2, got {reference_runs!r}")
        self.env = env
        self.message_check = message_check
        self.message_overlap = message_overlap
        self.identical_shortcut = identical_shortcut
        self.reference_runs = reference_runs
        # (state key, commands) -> the demonstration's runs there: computed once per state, also when
        # a group's actions are judged in parallel (`PivotEnv.judge_actions`); failures are not kept
        self._references: OnceMemo[ReferenceEffect | Verdict] = OnceMemo()

    @property
    def config_key(self) -> str:
        """Names this verifier and every setting that changes its verdicts (part of the cache key)."""
        return (f"{self.name}(message_check={self.message_check},message_overlap={self.message_overlap},"
                f"identical_shortcut={self.identical_shortcut},reference_runs={self.reference_runs})")

    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.error:
            return Verdict.wrong(f"unusable action: {action.error}", self.name)
        ref_cmds, why = bash_commands(reference)
        if ref_cmds is None:
            return Verdict.infra("verifier_error", f"reference action is not a bash call: {why}", self.name)
        if not ref_cmds:  # the demonstration finishes with a message
            return self._judge_message(state, action, reference)
        if not action.tool_calls:
            return Verdict.wrong("the demonstration runs a command here; the action is a plain message", self.name)
        cmds, why = bash_commands(action)
        if cmds is None:
            return Verdict.wrong(why, self.name)
        if self.identical_shortcut and normalise_commands(cmds) == normalise_commands(ref_cmds):
            return Verdict.correct("identical to the demonstration's command(s); not executed", self.name,
                                   executed=False)
        ref: ReferenceEffect | Verdict | None = None
        try:
            with self.env.forked_run(state, cmds) as (got, box):
                # the state's reference runs (once per state) come after the action's: in a group judged
                # in parallel the other actions' forks run meanwhile instead of waiting for them
                ref = self._reference_effect(state, ref_cmds)
                if isinstance(ref, Verdict):
                    return ref
                mismatch = ref.check(got, lambda p: read_text(box, p))
        except Exception as e:  # noqa: BLE001  (who is to blame is decided just below)
            # a reference that cannot run is the infrastructure's whatever the action did
            ref = ref if ref is not None else self._reference_effect(state, ref_cmds)
            return ref if isinstance(ref, Verdict) else self._action_failed(state, e)
        return self._verdict(ref, got, mismatch)

    def _judge_message(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.tool_calls:
            return Verdict.wrong("the demonstration ends the task with a message here; the action runs a command",
                                 self.name)
        if self.message_check == "any":
            return Verdict.correct("message where the demonstration sends a message", self.name)
        passed = self.env.run_task_test(state)
        if passed is None:
            return Verdict.infra("sandbox_error", "could not run the task test", self.name)
        if not passed:
            return Verdict.wrong("the agent stops but the task's test fails in this state", self.name)
        recall = message_recall(action.content, reference.get("content") or "")
        if self.message_check == "content" and recall < self.message_overlap:
            return Verdict.wrong(f"the task is done but the message does not report it (recalls {recall:.2f} "
                                 f"< {self.message_overlap} of the demonstration's content words)", self.name,
                                 recall=recall)
        return Verdict.correct("the agent stops, the task's test passes in this state"
                               + (f" and the message reports it (recall {recall:.2f})"
                                  if self.message_check == "content" else ""), self.name, recall=recall)

    def _action_failed(self, state: Any, error: Exception) -> Verdict:
        """The action's fork raised. If a fresh fork of the same state still works, the action broke
        its own sandbox (deleted the workdir, killed its processes, ...): its fault, reward 0.
        Otherwise the backend is failing: masked."""
        what = f"{type(error).__name__}: {error}"
        if isinstance(error, SandboxLostError):  # killed from outside, or never started
            return Verdict.infra("sandbox_error", f"the action's sandbox was lost: {what}", self.name)
        if self.env.sandbox_healthy(state):
            return Verdict.wrong(f"the action broke its sandbox ({what[:300]})", self.name, broke_sandbox=True)
        return Verdict.infra("sandbox_error", f"running the action failed and the backend is unhealthy: {what}",
                             self.name)

    def _reference_effect(self, state: Any, cmds: list[str]) -> ReferenceEffect | Verdict:
        return self._references.get((self.env.state_key(state), json.dumps(cmds)),
                                    lambda: self._run_reference(state, cmds),
                                    keep=lambda ref: not isinstance(ref, Verdict))

    def _run_reference(self, state: Any, cmds: list[str]) -> ReferenceEffect | Verdict:
        try:
            # the state itself, to know which files the demonstration changed
            base = self.env.run_in_fork(state, [":"]).files if self.reference_runs == 2 else None
            with contextlib.ExitStack() as stack:
                a, box_a = stack.enter_context(self.env.forked_run(state, cmds))
                if self.reference_runs == 1:
                    b, box_b = a, box_a
                else:
                    b, box_b = stack.enter_context(self.env.forked_run(state, cmds))
                return ReferenceEffect(a, b, lambda p: read_text(box_a, p), lambda p: read_text(box_b, p), base)
        except Exception as e:  # noqa: BLE001  (the demonstration cannot run here: infrastructure)
            return Verdict.infra("sandbox_error", f"running the reference failed: {type(e).__name__}: {e}", self.name)

    def _verdict(self, ref: ReferenceEffect, got: Outcome, mismatch: Mismatch | None) -> Verdict:
        details = {"exit_codes": list(got.exit_codes), "nondeterministic": ref.nondeterministic[:20]}
        if timed_out(got) and not ref.timed_out:
            return Verdict.wrong("the action timed out; the demonstration did not", self.name, **details)
        if got.disk_full and not ref.disk_full:
            return Verdict.wrong("the command filled the sandbox's disk quota", self.name, **details)
        if mismatch is None:
            masked = f" (left out, as they differ between two demonstration runs: {', '.join(ref.nondeterministic[:5])})"
            return Verdict.correct("same file-system effect, exit status and output"
                                   + (masked if ref.nondeterministic else ""), self.name, **details)
        if mismatch.facet == "exit status":
            return Verdict.wrong(f"exit status differs: {mismatch.detail}", self.name, **details)
        if mismatch.facet == "file-system":
            return Verdict.wrong(f"different file-system effect: {mismatch.detail}", self.name, **details)
        if mismatch.facet == "git":
            return Verdict.wrong(f"different git repository state ({mismatch.detail})", self.name, **details)
        return Verdict.wrong("same effect on files but different output", self.name, **details)


JudgeFn = Callable[[list[dict], str, str], bool]


class PaperVerifier(NoSettings):
    """The paper's terminal rule (no execution): finished flag equal, then command similarity >= 0.95,
    then an optional judge `judge_fn(prefix_messages, action_command, reference_command) -> bool`."""

    name = "paper"

    def __init__(self, threshold: float = PAPER_SIMILARITY, judge_fn: JudgeFn | None = None):
        self.threshold = threshold
        self.judge_fn = judge_fn

    @property
    def config_key(self) -> str:
        judge = "none" if self.judge_fn is None else f"{getattr(self.judge_fn, '__qualname__', 'judge')}@{id(self.judge_fn)}"
        return f"{self.name}(threshold={self.threshold},judge={judge})"

    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.error:
            return Verdict.wrong(f"output does not parse: {action.error}", self.name)
        ref_cmds, _ = bash_commands(reference)
        ref_done = not tool_calls_of(reference)
        if action.is_message != ref_done:
            return Verdict.wrong("task-complete flag differs from the demonstration's", self.name)
        if ref_done:
            return Verdict.correct("both finish with a message (paper rule: any message)", self.name)
        cmds, why = bash_commands(action)
        if cmds is None:
            return Verdict.wrong(why, self.name)
        a, b = "\n".join(cmds), "\n".join(ref_cmds or [])
        ratio = similarity(a, b)
        if ratio >= self.threshold:
            return Verdict.correct(f"command similarity {ratio:.2f} >= {self.threshold}", self.name, similarity=ratio)
        if self.judge_fn is not None and self.judge_fn(getattr(state, "prefix", []), a, b):
            return Verdict.correct(f"judge says equivalent (similarity {ratio:.2f})", self.name, similarity=ratio)
        return Verdict.wrong(f"command similarity {ratio:.2f} < {self.threshold} and no judge agreed", self.name,
                             similarity=ratio)
