"""The miniature world of the paper-table benchmark: a register machine with task families, small
enough that a few-million-parameter model learns it on a 2-core CPU in a minute, and shaped so that
the paper's four claims can be tested on it.

Description:
    A register x starts at a small number. Each task is a short list of operations; the scripted user states x and
    the next operation ("x = 4. Next: times 3"), the agent answers with an arithmetic expression over x
    and digits that sets x ("x*3"), and finally reports x ("12"). Families:

    - group A (out-of-domain, "first group of terminal families"): `add N`, `subtract N`;
    - group B (in-domain target, "second group"): `times N`, `add N twice`;
    - tool use (out-of-domain): group A's operations and, in half of the tasks, one `times N`, applied
      by calling the `apply` tool (`<tool_call>{"name": "apply", "arguments": {"expr": "x*3"}}</tool_call>`),
      whose output is the new x and the next operation ("x = 7. Next: subtract 4", as the user states it
      in the other families: the skill differs in its syntax, not in tracking a plan); the report is a
      plain message. So the base meets multiplication before the target domain, in another syntax (as a
      real model knows arithmetic before it meets an agent format): world v10, where no family outside
      group B wrote a `*`, gave bases whose "times" turns were right in 1-5% of samples at temperature 1
      (RL found 5 pivots among 64 such states) and SFT that answered every "times N" with "x*9".

    Demonstrations of the pre-training mix write each expression in one of several equivalent forms
    ("x+3", "3+x"); the in-domain training trajectories (what SFT and PivotRL see) always use
    the canonical one. So a functional verifier can credit a correct variant that strict matching
    rejects: the property the paper's functional reward relies on.

Rewards (pivot mode, `verifier=`):
    - "execution" (default, functional): the sampled expression's value at the current x equals the
      demonstration's (tool calls: same tool, and the `expr` argument's value equal); a report is right
      when it equals the demonstration's number.
    - "paper": the paper's rule for messages, difflib similarity >= 0.95 of the normalised text, and
      its tool-call rule, same name and same arguments.
    - "exact": identical text / identical call.
    Anything unparseable, a tool call where a message is expected, or the reverse, scores 0 with a
    reason. Episode mode: 1 when the final report equals the task's result and x was never corrupted.

Splits: task seeds are drawn from disjoint ranges per purpose (pre-training, in-domain train,
validation curves, evaluation, and "select", where the base's pre-training stops) and per phase
(`dev` for designing the world, `test` for the final table), so nothing the world was tuned on is
evaluated in the final table.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import warnings
from typing import Any

from pivot_envs.base_env import PivotEnv
from pivot_envs.parsing import ParsedAction
from pivot_envs.trajectory import Trajectory
from pivot_envs.verdict import Verdict
from pivot_envs.verifiers.rules import (
    PAPER_SIMILARITY,
    exact_match,
    normalise_text,
    similarity,
)

_EXPR = re.compile(r"^[x0-9+\-* ()]{1,40}$")

APPLY_TOOL = {"type": "function", "function": {
    "name": "apply", "description": "Set x to the value of an expression over x.",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]}}}

WORLD_VERSION = 13
"""Bump when tasks, rendering or the tokenizer change: it names the cached bases and the grid cells."""

GROUP_A = ("add", "subtract")
GROUP_B = ("times", "add_twice")
FAMILIES = {"A": GROUP_A, "B": GROUP_B, "tool": (*GROUP_A, "times")}
# Disjoint seed ranges: purpose x phase. A task's seed never appears under two purposes.
_SEED_BASE = {("pretrain", "dev"): 1_000_000, ("train", "dev"): 2_000_000, ("eval", "dev"): 3_000_000,
              ("pretrain", "test"): 4_000_000, ("train", "test"): 5_000_000, ("eval", "test"): 6_000_000,
              ("val", "dev"): 7_000_000, ("val", "test"): 8_000_000,  # val: the learning curves' tasks
              ("select", "dev"): 9_000_000, ("select", "test"): 9_500_000}  # select: where pre-training stops


def evaluate(expression: Any, x: int) -> int | None:
    """Value of `expression` with x bound, or None when it is not a small arithmetic expression."""
    if not isinstance(expression, str) or not _EXPR.match(expression.strip()) or "**" in expression:
        return None  # digits, x, + - * and brackets only; no powers (9**9**9 would never finish)
    try:
        with warnings.catch_warnings():  # "2(x+3)" compiles with a SyntaxWarning before its TypeError
            warnings.simplefilter("ignore", SyntaxWarning)
            value = eval(expression.strip(), {"__builtins__": {}}, {"x": x})
    except (SyntaxError, ArithmeticError, TypeError, NameError, ValueError):
        return None
    return value if isinstance(value, int) and abs(value) < 10**9 else None


# ----------------------------------------------------------------------------- tasks

def _phrase(op: str, n: int) -> str:
    return {"add": f"add {n}", "subtract": f"subtract {n}", "times": f"times {n}", "add_twice": f"add {n} twice"}[op]


def _apply(op: str, n: int, x: int) -> int:
    return {"add": x + n, "subtract": x - n, "times": x * n, "add_twice": x + 2 * n}[op]


def _expression(op: str, n: int, rng: random.Random | None) -> str:
    """The demonstration's expression: canonical when rng is None, else one of the equivalent forms."""
    # Every variant only rearranges the demonstration's own symbols (no arithmetic on n: a variant such
    # as x+1+{n-1} asks a tiny model to subtract before it can copy, and greedy decoding then picks it).
    # No bracketed forms: the world's 2-layer model, decoding greedily, opened brackets it then did not
    # close ("(x-3"; world v6: group A 30%, v5's tool calls alike).
    forms = {"add": [f"x+{n}", f"{n}+x"],
             "subtract": [f"x-{n}"],
             "times": [f"x*{n}", f"{n}*x"],
             "add_twice": [f"x+{n}+{n}", f"x+2*{n}", f"{n}+{n}+x"]}[op]
    return forms[0] if rng is None else rng.choice(forms)


def show(x: int) -> str:
    """How the register is displayed, in instructions and in the report: four digits, zero-padded
    ("x = 0384"), as a fixed-width display. Why: copying a number then needs one attention offset
    for every number, the same for 7 and for 4096. With natural widths (world v2) the offset depends
    on the number's length, the base only learnt to copy after an induction-like phase change that
    came at step ~200, ~400 or never depending on the seed and the library versions (issue 17)."""
    return f"{x:04d}"


def _instruction(x: int, op: str | None, n: int = 0) -> str:
    return f"x = {show(x)}. Next: {_phrase(op, n)}" if op else f"x = {show(x)}. Next: report"


def _operations(family: str, rng: random.Random, horizon: int | None) -> list[tuple[str, int]]:
    """The task's operations: `horizon` of them (default 2 or 3). A group-B task has exactly one `times`
    (at a random position; the others are `add N twice`): so numbers stay short at any horizon (x < 10_000
    + 18 * horizon) and copying them stays the skill group A teaches; and no in-domain task can be solved
    with "add twice" alone, which is close to group A's "add" and learned first (world v9, at most one
    `times`: a third of the tasks had none, and bases that never wrote "times" right solved 38% of them)."""
    n_ops = horizon if horizon is not None else rng.randint(2, 3)
    if family == "B":
        at = rng.randrange(n_ops)
        return [("times" if i == at else "add_twice", rng.randint(2, 9)) for i in range(n_ops)]
    ops = [(rng.choice(GROUP_A), rng.randint(2, 9)) for _ in range(n_ops)]
    if family == "tool" and n_ops and rng.random() < 0.5:  # at most one `times`, for the same reason as B
        ops[rng.randrange(n_ops)] = ("times", rng.randint(2, 9))
    return ops


def _start(rng: random.Random, ops: list[tuple[str, int]]) -> int:
    """The register's first value: never 0 (at x = 0, "x*3" and "0" would be the same action), never
    negative after group A's at most 3 x 9 subtracted. A task with a `times` starts below 1000 (one `times`
    keeps it below 10,000 at any horizon); the others start anywhere up to 9972, so that every digit of
    the display, the leading one included, is copied in group A. (World v7 started every family below
    1000: group A's leading digit was always 0, and on two of four dev seeds no method, SFT included,
    ever reported a group-B result >= 1000: 68% of the in-domain tasks.) Past 3 operations a task that may
    add or subtract (group A, tool use) keeps 9 more of room at each end per extra operation, so x stays
    positive and four digits at any horizon; group B only grows and tasks of <= 3 operations draw exactly
    as before (their seeds give the same tasks)."""
    extra = 9 * max(0, len(ops) - 3) if any(op in GROUP_A for op, _ in ops) else 0
    if any(op == "times" for op, _ in ops):
        return rng.randint(30 + extra, 999)
    return rng.randint(30 + extra, 9972 - extra)


def make_task(family: str, seed: int, *, canonical: bool, horizon: int | None = None) -> dict:
    """One task of `family` ("A", "B" or "tool") and its demonstration, deterministic for `seed`;
    `horizon` fixes the number of operations (default: 2 or 3)."""
    rng = random.Random(f"{family}:{seed}")
    ops = _operations(family, rng, horizon)
    # Tool calls always carry the canonical form: inside a JSON argument, the bracketed variants
    # ("(x+5)") left the world's 2-layer model closing brackets it never opened (world v5: 3-4% tool use).
    form_rng = None if canonical or family == "tool" else rng
    messages: list[dict] = []
    x = start = _start(rng, ops)
    tools: list[dict] = []
    if family == "tool":
        tools = [APPLY_TOOL]
        plan = ", then ".join(_phrase(op, n) for op, n in ops)
        messages.append({"role": "user", "content": f"With the apply tool: {plan}, then report x. "
                                                    + _instruction(start, *ops[0])})
        for i, (op, n) in enumerate(ops):
            expr = _expression(op, n, form_rng)
            messages.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": "apply", "arguments": {"expr": expr}}}]})
            x = _apply(op, n, x)
            messages.append({"role": "tool", "tool_call_id": f"call_{i}", "name": "apply",
                             "content": _instruction(x, *(ops[i + 1] if i + 1 < len(ops) else (None, 0)))})
    else:
        for op, n in ops:
            messages += [{"role": "user", "content": _instruction(x, op, n)},
                         {"role": "assistant", "content": _expression(op, n, form_rng)}]
            x = _apply(op, n, x)
        messages.append({"role": "user", "content": _instruction(x, None)})
    messages.append({"role": "assistant", "content": show(x)})
    name = f"mini-{family}-{seed}" + (f"-h{horizon}" if horizon is not None else "")
    return {"id": name, "domain": "tooluse", "tools": tools, "messages": messages,
            "task": {"family": family, "start": start, "ops": [list(o) for o in ops], "result": x}}


def tasks(family: str, purpose: str, phase: str, n: int, *, canonical: bool = True, offset: int = 0,
          horizon: int | None = None) -> list[dict]:
    """n tasks of `family` for `purpose` ("pretrain", "train", "val", "eval", "select") in `phase` ("dev", "test")."""
    base = _SEED_BASE[(purpose, phase)] + offset
    return [make_task(family, base + i, canonical=canonical, horizon=horizon) for i in range(n)]


# ----------------------------------------------------------------------------- the world's tokenizer

def build_world_tokenizer(vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer for this world, with every digit its own token.

    Why not the tiny model's tokenizer: it merges digits by context (" 384" in "x = 384" is ' 3' '84',
    the report "384" is '38' '4'), so copying a number means learning a different token mapping per
    number, and its corpus (shell text) leaves the world's markup (tool schema, call JSON) in ~370
    tokens per tool-use conversation. Here digits split individually before BPE (the same tokens in
    every context), newlines and minus signs are never merged, and the merges are learnt on the
    world's own conversations (pre-training tasks of the dev phase only, so no evaluation text), so
    the schema and the call markup are a few tokens each. Deterministic."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    from pivot_algo.policy import tiny
    from pivot_algo.policy.chat_template import chat_template

    render = tiny.build_tokenizer(0)  # only its chat template is used, to render the corpus as text
    conversations = [t for fam in ("A", "B", "tool") for t in tasks(fam, "pretrain", "dev", 300, canonical=False)]
    corpus = [chat_template()] + [render.apply_chat_template(t["messages"], tools=t["tools"] or None, tokenize=False)
                                  for t in conversations]
    tok = Tokenizer(models.BPE())
    # Newlines stand alone: the generation prompt ends at "assistant\n", so no merge may cross one; so
    # does the minus sign (else "x = -" merges and -4 is other tokens in the prompt than in the report),
    # and so do "+" and "*": merged, "x*" was a token only group B uses, and the digit after it had to be
    # copied by a circuit of its own (one dev base answered every "times N" with "x*3", and SFT could not
    # move it); isolated, an operand after "*" follows an operator token like one after "+" or "-".
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", behavior="isolated"),
                                                 pre_tokenizers.Split("-", behavior="isolated"),
                                                 pre_tokenizers.Split("+", behavior="isolated"),
                                                 pre_tokenizers.Split("*", behavior="isolated"),
                                                 pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=tiny.SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in tiny.MARKUP_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = chat_template()
    return fast


@dataclasses.dataclass
class PretrainMix:
    """What the base model is pre-trained on (by SFT): broad skills, a little of the target group."""

    group_a: int = 300
    """Group-A tasks (out-of-domain families)."""
    tool: int = 200
    """Tool-use tasks."""
    group_b: int = 30
    """Group-B tasks (the in-domain target): few, so the base is only partly competent there."""
    report: int = 0
    """Report-only conversations ("x = 0384. Next: report" -> "0384"): copying, densely supervised."""
    tool_short: int = 0
    """One-call tool-use tasks: the report copies x out of a tool response (another offset than a user
    message's), densely supervised."""
    max_horizon: int | None = None
    """None: group A, tool use and group B tasks have 2 or 3 operations. N: their operation counts cycle
    through 2..N, so the base meets long conversations before its target domain does (the horizon
    sweep's bases: pre-trained on <= 3 operations, a base never solved a task of 8, see presets "long")."""

    def trajectories(self, phase: str, seed: int) -> list[dict]:
        off = 10_000 * seed  # each seed's base sees its own pre-training tasks
        return (tasks("A", "pretrain", phase, self.report, offset=off + 5_000, horizon=0)
                + tasks("tool", "pretrain", phase, self.tool_short, offset=off + 5_000, horizon=1)
                + self._mixed("A", phase, self.group_a, off)
                + self._mixed("tool", phase, self.tool, off)
                + self._mixed("B", phase, self.group_b, off))

    def _mixed(self, family: str, phase: str, n: int, offset: int) -> list[dict]:
        if self.max_horizon is None:
            return tasks(family, "pretrain", phase, n, canonical=False, offset=offset)
        base = _SEED_BASE[("pretrain", phase)] + offset
        return [make_task(family, base + i, canonical=False, horizon=2 + i % (self.max_horizon - 1)) for i in range(n)]


# ----------------------------------------------------------------------------- the env

@dataclasses.dataclass
class RegisterState:
    trajectory: Trajectory
    x: int
    done: int  # operations applied so far
    reported: int | None = None
    corrupted: bool = False  # an operation produced the wrong value


class MiniWorldEnv(PivotEnv):
    """See the module docstring. `verifier` is "execution" (default), "paper" or "exact"."""

    domain = "tooluse"
    VERIFIERS = ("execution", "paper", "exact")

    def __init__(self, trajectories: Any = None, *, verifier: str = "execution", max_turns: int = 6, **kwargs: Any):
        if verifier not in self.VERIFIERS:
            raise ValueError(f"verifier must be one of {self.VERIFIERS}, got {verifier!r}")
        super().__init__(trajectories, max_turns=max_turns, **kwargs)
        self.verifier_name = verifier

    def default_trajectories(self) -> list[Trajectory | dict]:
        return list(tasks("B", "train", "dev", 16))

    def verifier_key(self) -> str:
        return f"miniworld:{self.verifier_name}"

    # --- state
    def _ops(self, traj: Trajectory) -> list[tuple[str, int]]:
        return [(str(op), int(n)) for op, n in traj.task["ops"]]

    def load_state(self, traj: Trajectory, k: int) -> RegisterState:
        state = RegisterState(traj, int(traj.task["start"]), 0)
        for action in traj.actions_before(k):
            expr = _expr_of(action)
            if expr is not None:  # operations; the report is the last action and never replayed
                state.x = evaluate(expr, state.x) or 0
                state.done += 1
            self.costs.replay_turns += 1
            self.costs.rollout_turns += 1
        return state

    def state_key(self, state: RegisterState) -> str:
        return f"{state.trajectory.id}:{state.done}:{state.x}"

    # --- pivot mode
    def judge(self, state: RegisterState, action: ParsedAction, reference: dict) -> Verdict:
        method = self.verifier_name
        if action.error:
            return Verdict.wrong(f"unparseable action: {action.error}", method)
        ref_calls = reference.get("tool_calls") or []
        if bool(action.tool_calls) != bool(ref_calls):
            expected = "a tool call" if ref_calls else "a plain message"
            return Verdict.wrong(f"expected {expected}", method)
        if method == "exact":
            return exact_match(action, reference, method)
        if method == "paper":
            if ref_calls:
                same = [(c.name, c.arguments) for c in action.tool_calls] == [
                    (c["function"]["name"], _args(c)) for c in ref_calls]
                return (Verdict.correct("same call and arguments", method) if same else
                        Verdict.wrong("tool call differs (name or arguments)", method))
            ratio = similarity(normalise_text(action.content), normalise_text(reference.get("content")))
            return (Verdict.correct(f"similarity {ratio:.2f} >= {PAPER_SIMILARITY}", method) if ratio >= PAPER_SIMILARITY
                    else Verdict.wrong(f"similarity {ratio:.2f} < {PAPER_SIMILARITY}", method))
        # execution: compare values in this state
        self.costs.rollout_turns += 2  # the sampled action and the demonstration's, each evaluated at x
        ref_expr = _expr_of(reference)
        want = evaluate(ref_expr, state.x) if ref_expr is not None else _int(reference.get("content"))
        if ref_calls:
            if len(action.tool_calls) != 1 or action.tool_calls[0].name != "apply":
                return Verdict.wrong("expected one call of apply", method)
            got = evaluate(action.tool_calls[0].arguments.get("expr"), state.x)
        elif state.done < len(self._ops(state.trajectory)):
            got = evaluate(action.content, state.x)
        else:
            got = _int(action.content)
        if got is None:
            return Verdict.wrong(f"{_action_text(action)[:40]!r} is not an expression over x", method)
        return (Verdict.correct(f"value {got} as demonstrated", method) if got == want else
                Verdict.wrong(f"value {got} differs from the demonstration's {want}", method))

    # --- episode mode
    def execute(self, state: RegisterState, action: ParsedAction) -> list[dict]:
        out = []
        for call in action.tool_calls:
            self.costs.rollout_turns += 1
            value = evaluate(call.arguments.get("expr"), state.x) if call.name == "apply" else None
            if value is None:
                out.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                            "content": "error: apply takes expr, an arithmetic expression over x"})
                continue
            self._advance(state, value)
            ops = self._ops(state.trajectory)
            step = ops[state.done] if state.done < len(ops) else (None, 0)
            out.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                        "content": _instruction(state.x, *step)})
        return out

    def _advance(self, state: RegisterState, value: int) -> None:
        ops = self._ops(state.trajectory)
        if state.done < len(ops):
            op, n = ops[state.done]
            state.corrupted |= value != _apply(op, n, state.x)
        else:
            state.corrupted = True  # an operation nobody asked for
        state.x = value
        state.done += 1

    def next_user_message(self, state: RegisterState) -> str | None:
        ops = self._ops(state.trajectory)
        content = self._messages[-1].get("content") or ""
        self.costs.rollout_turns += 1
        if state.trajectory.task["family"] == "tool" or state.done >= len(ops):  # this message is the report
            state.reported = _int(content)
            return None
        value = evaluate(content, state.x)
        if value is None:
            state.corrupted = True
        else:
            self._advance(state, value)
        if state.done >= len(ops):
            return _instruction(state.x, None)
        op, n = ops[state.done]
        return _instruction(state.x, op, n)

    def episode_reward(self, state: RegisterState) -> tuple[float, dict]:
        result = state.trajectory.task["result"]
        ok = (state.reported == result and not state.corrupted and state.done == len(self._ops(state.trajectory)))
        return float(ok), {"reported": state.reported, "x": state.x, "corrupted": state.corrupted}


def _args(call: dict) -> dict:
    a = call["function"].get("arguments")
    return json.loads(a) if isinstance(a, str) else dict(a or {})


def _expr_of(message: dict) -> str | None:
    calls = message.get("tool_calls") or []
    if calls:
        return _args(calls[0]).get("expr")
    content = message.get("content") or ""
    return content if _EXPR.match(content.strip()) and "x" in content else None


def _int(text: Any) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _action_text(action: ParsedAction) -> str:
    if action.tool_calls:
        return json.dumps([[c.name, c.arguments] for c in action.tool_calls], sort_keys=True)
    return normalise_text(action.content)
