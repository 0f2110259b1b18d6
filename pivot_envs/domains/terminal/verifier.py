"""Terminal verifiers: is a sampled bash action functionally equivalent to the demonstration's?

`ExecutionVerifier` (default, "execution") runs the sampled command(s) and the demonstration command
in two forks of the live state at turn k and compares their effects:

- file-system effect: the manifest of the state roots (default: the workdir) - every path, its kind,
  permission bits and content hash. Modification times are ignored; archives (.tar*, .tgz, .zip,
  .gz) are compared by their members, not their bytes (which embed creation times). Inside git repositories the
  object store is not compared byte for byte (commit ids depend on commit messages); instead each
  repository is summarised by HEAD's tree, the branch -> tree map, the commit count and
  `git status --porcelain`;
- exit status: equal exit codes (a timeout is its own status);
- output: stdout after normalisation (trailing whitespace of each line and leading/trailing blank
  lines dropped); stderr is diagnostics and is not compared.

Equivalent = all three equal. When the demonstration's turn is a plain message (the agent says it is
done), "any message" must not score 1 (the paper's known reward hack). `message_check`:
- "content" (default): the task's test passes in the state at turn k (stopping is right only when
  the work is done) AND the message reports it: it recalls at least `message_overlap` (0.3) of the
  demonstration message's content words (numbers, file names, words of 3+ letters);
- "task_state": the test alone; "any": the paper's behaviour.

`PaperVerifier` ("paper") is the paper's non-executing rule: finished-flag (message vs command) must
match; difflib similarity of the command strings >= 0.95 passes; otherwise an optional judge callable
decides (no judge: 0). `ExactVerifier` ("exact") is strict string match (the ablation).
"""

from __future__ import annotations

import difflib
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from pivot_envs.bash_tool import bash_commands
from pivot_envs.effects import Outcome, diff_paths, normalise_output
from pivot_envs.parsing import ParsedAction
from pivot_envs.trajectory import tool_calls_of
from pivot_envs.verdict import Verdict

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


class ExecutionVerifier:
    """Execute both actions in forks of the state at turn k and compare effects (module docstring)."""

    name = "execution"

    def __init__(self, env: Any, message_check: str = "content", message_overlap: float = 0.3):
        if message_check not in ("content", "task_state", "any"):
            raise ValueError(f"message_check must be 'content', 'task_state' or 'any', got {message_check!r}")
        self.env = env
        self.message_check = message_check
        self.message_overlap = message_overlap
        self._ref_outcomes: dict[tuple[str, str], Outcome | Verdict] = {}
        self._lock = threading.Lock()

    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.error:
            return Verdict.wrong(f"unusable action: {action.error}", self.name)
        ref_cmds, why = bash_commands(reference)
        if ref_cmds is None:
            return Verdict.infra("verifier_error", f"reference action is not a bash call: {why}", self.name)
        if not ref_cmds:  # the demonstration finishes with a message
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
        if not action.tool_calls:
            return Verdict.wrong("the demonstration runs a command here; the action is a plain message", self.name)
        cmds, why = bash_commands(action)
        if cmds is None:
            return Verdict.wrong(why, self.name)
        ref = self._reference_outcome(state, ref_cmds)
        if isinstance(ref, Verdict):
            return ref
        try:
            got = self.env.run_in_fork(state, cmds)
        except Exception as e:  # infra: masked
            return Verdict.infra("sandbox_error", f"running the action failed: {type(e).__name__}: {e}", self.name)
        return self.compare(ref, got)

    def _reference_outcome(self, state: Any, cmds: list[str]) -> Outcome | Verdict:
        key = (self.env.state_key(state), json.dumps(cmds))
        with self._lock:
            if key in self._ref_outcomes:
                return self._ref_outcomes[key]
        try:
            out: Outcome | Verdict = self.env.run_in_fork(state, cmds)
        except Exception as e:
            return Verdict.infra("sandbox_error", f"running the reference failed: {type(e).__name__}: {e}", self.name)
        with self._lock:
            self._ref_outcomes[key] = out
        return out

    def compare(self, ref: Outcome, got: Outcome) -> Verdict:
        details = {"exit_code": got.exit_code, "reference_exit_code": ref.exit_code}
        if got.timed_out and not ref.timed_out:
            return Verdict.wrong("the action timed out; the demonstration did not", self.name, **details)
        if got.exit_code != ref.exit_code or got.timed_out != ref.timed_out:
            return Verdict.wrong(f"exit status {got.exit_code} differs from the demonstration's {ref.exit_code}",
                                 self.name, **details)
        if got.files != ref.files:
            diff = diff_paths(ref.files, got.files)
            return Verdict.wrong("different file-system effect: " + ", ".join(diff), self.name, paths=diff, **details)
        if got.git != ref.git:
            return Verdict.wrong("different git repository state (HEAD tree, branches or status)", self.name, **details)
        if normalise_output(got.stdout) != normalise_output(ref.stdout):
            return Verdict.wrong("same effect on files but different output", self.name, **details)
        return Verdict.correct("same file-system effect, exit status and output", self.name, **details)


class ExactVerifier:
    """Strict match: same tool calls with identical arguments (whitespace-trimmed), or identical text."""

    name = "exact"

    def judge(self, state: Any, action: ParsedAction, reference: dict) -> Verdict:
        if action.error:
            return Verdict.wrong(f"unusable action: {action.error}", self.name)
        ref_calls = [(c.name, json.dumps(c.arguments, sort_keys=True)) for c in tool_calls_of(reference)]
        got_calls = [(c.name, json.dumps(c.arguments, sort_keys=True)) for c in action.tool_calls]
        if ref_calls or got_calls:
            ok = ref_calls == got_calls
        else:
            ok = (reference.get("content") or "").strip() == action.content.strip()
        return (Verdict.correct("exact match", self.name) if ok
                else Verdict.wrong("not a string match of the demonstration", self.name))


JudgeFn = Callable[[list[dict], str, str], bool]


class PaperVerifier:
    """The paper's terminal rule (no execution): finished flag equal, then command similarity >= 0.95,
    then an optional judge `judge_fn(prefix_messages, action_command, reference_command) -> bool`."""

    name = "paper"

    def __init__(self, threshold: float = 0.95, judge_fn: JudgeFn | None = None):
        self.threshold = threshold
        self.judge_fn = judge_fn

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
        ratio = difflib.SequenceMatcher(None, a, b).ratio()
        if ratio >= self.threshold:
            return Verdict.correct(f"command similarity {ratio:.2f} >= {self.threshold}", self.name, similarity=ratio)
        if self.judge_fn is not None and self.judge_fn(getattr(state, "prefix", []), a, b):
            return Verdict.correct(f"judge says equivalent (similarity {ratio:.2f})", self.name, similarity=ratio)
        return Verdict.wrong(f"command similarity {ratio:.2f} < {self.threshold} and no judge agreed", self.name,
                             similarity=ratio)
