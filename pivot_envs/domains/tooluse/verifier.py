"""Tool-use verifiers: is a sampled assistant action equivalent to the demonstration's action at turn k?

Five named verifiers (`ENV_SPEC.verifiers` in `__init__.py`, built by `Class.for_env(env)`), all `judge(state, action, reference) -> Verdict`:

- `canonical`: tool calls compared after canonicalisation against the tool schema:
  * tool names equal; argument order irrelevant; parallel calls of one turn compared as a multiset;
  * optional parameters that are omitted take their default (the task's `defaults` table, else the
    tool schema's JSON-schema `default`), so an explicit default equals an omitted one;
  * lossless coercions the schema allows: `number` params accept ints (5 -> 5.0) and numeric strings
    ("2.5" -> 2.5); `integer` params accept integral floats (5.0 -> 5) and integer strings ("5" -> 5);
    `boolean` params accept "true"/"false" (any case). Nothing is ever coerced *to* a string ("5" vs 5
    for a `string` param differ: number formatting is not lossless), and bools are never numbers;
  * arrays and objects are canonicalised element-wise with their item / property schemas;
  * a value of an untyped (`any`) parameter is compared as JSON, with integral floats equal to ints.
- `execution`: run the sampled calls and the reference calls on two copies of the live state at turn
  k (in the backend worker) and compare the resulting state fingerprints (public attributes of every
  backend instance, BFCL's state-check scope) AND the outputs (multiset of tool outputs). Catches
  equivalent calls that look different (`ls(a=False)` vs `ls()`, `cd('temp')` in one spelling or
  another).
- `functional` (default): canonical, and when that says "different", execution. `Verdict.method` says
  which check decided. On backend-free trajectories (no `task["involved_classes"]`, see `turns.py`)
  it is canonical alone; `execution` on them is refused when the env is built.
- `paper`: the PivotRL paper's rule (pivot_envs/verifiers/rules.py: exact tool name, recursive argument
  comparison, several calls matched as a batch); a reference message accepts ANY message.
- `exact`: the strict-match ablation, the rule every domain shares (pivot_envs/verifiers/rules.py): the
  calls, in order, with JSON-identical arguments; a message must equal the reference text
  (whitespace-normalised), and an empty one never matches.

Messages (all verifiers but `paper` and `exact`): a plain message where a call was expected scores 0,
a call where a message was expected scores 0, an empty message scores 0. With
`message_policy="content"` (default) the message content is judged (rules in `messages.py`), so "any
message" does not score 1:
  * closing turns: the reply must report what the turn produced: recall at least half of the salient
    values (numbers, ids, names, short strings) of the turn's tool outputs that the demonstration's
    message mentions (else of the calls' arguments, else a word of a called function's name); a reply
    that declines where the demonstration did not scores 0;
  * clarification turns (BFCL ground truth empty: missing parameter, missing function): the reply must
    ask or decline AND name what is missing: the missing parameter or function by a word of its name or
    a distinctive word of its description (else a content word of the request that cannot be done).
`message_policy="any"` is the paper's behaviour (any message scores 1). `exact` needs the same text,
and never accepts an empty message.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Protocol

from pivot_envs.domains.tooluse.backends import RunResult, WorkerTimeout, state_diff
from pivot_envs.domains.tooluse.messages import MessageTurn, judge_message
from pivot_envs.errors import SandboxError
from pivot_envs.parsing import ParsedAction
from pivot_envs.trajectory import ToolCall, tool_calls_of
from pivot_envs.verdict import Verdict
from pivot_envs.verifiers.rules import exact_match, paper_calls_match

MESSAGE_POLICIES = ("content", "any")

_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")
_FLOAT_RE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


class ToolUseStateLike(Protocol):
    """What a verifier needs from the env's state at turn k."""

    @property
    def tools_by_name(self) -> dict[str, dict]: ...

    @property
    def defaults(self) -> dict[str, dict[str, Any]]: ...

    @property
    def allowed(self) -> list[str]: ...

    @property
    def message_kind(self) -> str | None: ...  # "close" / "clarify" when the reference is a message

    @property
    def message_turn(self) -> MessageTurn: ...  # what the message rules need (request, calls, outputs, ...)

    def run_calls(self, calls: list[tuple[str, dict]]) -> RunResult: ...

    def reference_result(self, calls: list[tuple[str, dict]]) -> RunResult: ...


# ----------------------------------------------------------------------------- canonical form

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def canonical_value(value: Any, schema: dict) -> Any:
    """Coerce `value` to the schema's type where that is lossless (rules in the module docstring). A
    union of types (`["integer", "null"]`) takes the first type the coerced value satisfies."""
    typ = schema.get("type")
    if isinstance(typ, list):
        for one in typ:
            cv = canonical_value(value, {**schema, "type": one})
            if _type_ok(cv, {"type": one}):
                return cv
        return value
    if typ == "number":
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.match(value):
            f = float(value)
            return f if math.isfinite(f) else value
    elif typ == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_RE.match(value):
            return int(value)
    elif typ == "boolean":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif typ == "array":
        if isinstance(value, list):
            items = schema.get("items", {})
            return [canonical_value(v, items) for v in value]
    elif typ == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: canonical_value(v, props.get(k, {})) for k, v in value.items()}
    return value


def _type_ok(value: Any, schema: dict) -> bool:
    typ = schema.get("type")
    if value is None or typ is None:
        return True
    if isinstance(typ, list):
        return any(_type_ok(value, {"type": one}) for one in typ)
    return {"number": _is_number(value), "integer": isinstance(value, int) and not isinstance(value, bool),
            "boolean": isinstance(value, bool), "string": isinstance(value, str), "array": isinstance(value, list),
            "object": isinstance(value, dict)}.get(typ, True)


def canonical_arguments(name: str, args: dict, tools_by_name: dict[str, dict], defaults: dict[str, dict]
                        ) -> tuple[dict, list[str]]:
    """(canonical arguments, problems): coerced, defaults filled. Problems name missing required
    arguments, unknown arguments and wrong types (they make the call differ from a valid reference)."""
    tool = tools_by_name.get(name)
    if tool is None:
        return dict(args), [f"unknown function {name!r}"]
    params = tool["function"].get("parameters", {})
    props = params.get("properties", {})
    problems = []
    out = {}
    for k, v in args.items():
        if k not in props:
            problems.append(f"unexpected argument {k!r}")
            out[k] = v
            continue
        cv = canonical_value(v, props[k])
        if not _type_ok(cv, props[k]):
            problems.append(f"argument {k!r} should be {props[k].get('type')}, got {type(v).__name__}")
        out[k] = cv
    for k, dv in defaults.get(name, {}).items():
        if k not in out:
            out[k] = canonical_value(dv, props.get(k, {}))
    for k in params.get("required", []):
        if k not in out:
            problems.append(f"missing required argument {k!r}")
    return out, problems


def _normalise_json(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {str(k): _normalise_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_normalise_json(x) for x in v]
    return v


def call_key(name: str, canon_args: dict) -> str:
    return json.dumps([name, _normalise_json(canon_args)], sort_keys=True, ensure_ascii=False)


def _fmt_call(name: str, args: dict) -> str:
    inner = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(args.items()))
    return f"{name}({inner})"


def compare_canonical(sampled: list[tuple[str, dict]], reference: list[tuple[str, dict]],
                      tools_by_name: dict[str, dict], defaults: dict[str, dict]) -> tuple[bool, str]:
    """Multiset comparison of canonicalised calls; the reason names the first difference."""
    s_can = [(n, *canonical_arguments(n, a, tools_by_name, defaults)) for n, a in sampled]
    r_can = [(n, *canonical_arguments(n, a, tools_by_name, defaults)) for n, a in reference]
    if Counter(call_key(n, a) for n, a, _ in s_can) == Counter(call_key(n, a) for n, a, _ in r_can):
        return True, "calls equal after canonicalisation (types, defaults, order)"
    if len(s_can) != len(r_can):
        return False, f"expected {len(r_can)} call(s) {[n for n, _, _ in r_can]}, got {len(s_can)} {[n for n, _, _ in s_can]}"
    s_names, r_names = Counter(n for n, _, _ in s_can), Counter(n for n, _, _ in r_can)
    if s_names != r_names:
        return False, f"wrong function(s): expected {sorted(r_names.elements())}, got {sorted(s_names.elements())}"
    # same names: explain the first unmatched reference call against the same-named sampled call
    remaining = Counter(call_key(n, a) for n, a, _ in s_can)
    for n, a, _ in r_can:
        key = call_key(n, a)
        if remaining[key] > 0:
            remaining[key] -= 1
            continue
        cand = next((c for c in s_can if c[0] == n and remaining[call_key(c[0], c[1])] > 0), None)
        if cand is None:
            break
        _, sa, problems = cand
        diffs = [f"argument {k!r}: expected {json.dumps(a.get(k))}, got {json.dumps(sa.get(k))}"
                 for k in sorted(set(a) | set(sa)) if _normalise_json(a.get(k)) != _normalise_json(sa.get(k))
                 and k in a and k in sa]
        return False, f"{n}: " + "; ".join(problems + diffs or ["arguments differ"])
    return False, "calls differ"


# ----------------------------------------------------------------------------- messages

# ----------------------------------------------------------------------------- verifiers

def _calls(action_calls: list[ToolCall]) -> list[tuple[str, dict]]:
    return [(c.name, c.arguments) for c in action_calls]


class ToolUseVerifier:
    """Shared checks (parse errors, unavailable functions, message vs call), then `compare`."""

    name = "base"

    @classmethod
    def for_env(cls, env: Any) -> ToolUseVerifier:
        """The factory `EnvSpec.verifiers` names: the env's `message_policy` (None = this verifier's default,
        "any" for paper, else "content")."""
        return cls() if env.message_policy is None else cls(env.message_policy)

    def __init__(self, message_policy: str = "content"):
        if message_policy not in MESSAGE_POLICIES:
            raise ValueError(f"message_policy must be one of {MESSAGE_POLICIES}, got {message_policy!r}")
        self.message_policy = message_policy

    def __call__(self, state: ToolUseStateLike, action: ParsedAction, reference: dict) -> Verdict:
        return self.judge(state, action, reference)

    def judge(self, state: ToolUseStateLike, action: ParsedAction, reference: dict) -> Verdict:
        if action.error is not None:
            return Verdict.wrong(f"unusable action: {action.error}", self.name)
        ref_calls = _calls(tool_calls_of(reference))
        sampled = _calls(action.tool_calls)
        if not ref_calls:
            if sampled:
                return Verdict.wrong(f"expected a message to the user, got tool call(s) {[n for n, _ in sampled]}",
                                     self.name)
            return self.judge_message(state, action.content, reference)
        if not sampled:
            return Verdict.wrong(f"expected tool call(s) {[n for n, _ in ref_calls]}, got a plain message", self.name)
        allowed = set(state.allowed)
        unavailable = [n for n, _ in sampled if n not in allowed]
        if unavailable:
            return Verdict.wrong(f"function(s) {unavailable} are not available at this turn", self.name)
        return self.compare(state, sampled, ref_calls)

    def judge_message(self, state: ToolUseStateLike, content: str, reference: dict) -> Verdict:
        ok, why = judge_message(content, state.message_turn, self.message_policy, reference.get("content") or "")
        return (Verdict.correct if ok else Verdict.wrong)(why, "message", message_kind=state.message_kind)

    def compare(self, state: ToolUseStateLike, sampled: list, ref_calls: list) -> Verdict:
        raise NotImplementedError


class CanonicalVerifier(ToolUseVerifier):
    name = "canonical"

    def compare(self, state, sampled, ref_calls):
        ok, why = compare_canonical(sampled, ref_calls, state.tools_by_name, state.defaults)
        return (Verdict.correct if ok else Verdict.wrong)(why, "canonical")


class ExecutionVerifier(ToolUseVerifier):
    """Runs both actions on copies of the state. A reference that cannot run is an infra failure
    (masked); a sampled action whose call does not return in time is the action's fault (reward 0)."""

    name = "execution"

    def compare(self, state, sampled, ref_calls):
        try:
            ref = state.reference_result(ref_calls)
        except SandboxError as e:
            kind = "timeout_infra" if isinstance(e, WorkerTimeout) else "sandbox_error"
            return Verdict.infra(kind, f"reference action could not be executed: {e}", "execution")
        try:
            got = state.run_calls(sampled)
        except WorkerTimeout as e:
            return Verdict.wrong(f"the sampled call did not finish: {e}", "execution")
        except SandboxError as e:
            return Verdict.infra("sandbox_error", f"sampled action could not be executed: {e}", "execution")
        diff = state_diff(got.fingerprint, ref.fingerprint)
        if diff:
            return Verdict.wrong(f"different resulting state in {diff}", "execution", outputs=got.outputs)
        if Counter(got.outputs) != Counter(ref.outputs):
            missing = list((Counter(ref.outputs) - Counter(got.outputs)).elements())
            return Verdict.wrong(f"same state but different outputs (expected {[m[:120] for m in missing]})",
                                 "execution", outputs=got.outputs)
        return Verdict.correct("same resulting state and same outputs", "execution")


class FunctionalVerifier(ToolUseVerifier):
    """Canonical first (cheap); when it says different, execution decides."""

    name = "functional"

    def __init__(self, message_policy: str = "content"):
        super().__init__(message_policy)
        self._canonical = CanonicalVerifier(message_policy)
        self._execution = ExecutionVerifier(message_policy)

    def compare(self, state, sampled, ref_calls):
        v = self._canonical.compare(state, sampled, ref_calls)
        if v.equivalent or not getattr(state, "has_backend", True):  # backend-free data: nothing to execute
            return v
        e = self._execution.compare(state, sampled, ref_calls)
        if not e.equivalent and not e.masked:
            e.reason = f"canonical: {v.reason}; execution: {e.reason}"
        return e


class PaperVerifier(ToolUseVerifier):
    name = "paper"

    def __init__(self, message_policy: str = "any"):
        super().__init__(message_policy)

    def compare(self, state, sampled, ref_calls):
        if paper_calls_match(sampled, ref_calls):
            return Verdict.correct("names equal and arguments match (paper rule)", "paper")
        return Verdict.wrong("names or arguments differ (paper rule)", "paper")


class ExactVerifier(ToolUseVerifier):
    """The strict-match ablation: the one rule of every domain (pivot_envs/verifiers/rules.py)."""

    name = "exact"

    def judge(self, state: ToolUseStateLike, action: ParsedAction, reference: dict) -> Verdict:
        return exact_match(action, reference, self.name)

