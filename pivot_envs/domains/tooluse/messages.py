"""What a plain reply must say to earn reward at a message turn of `PivotToolUse-v0`.

A message turn is one where the demonstration answers the user instead of calling a function. "Any
message" would be a reward hack ("ok" scoring 1 wherever the demonstration talks), so a reply is judged
by its content against what the turn is about. Two kinds (`task["message_turns"]`):

Closing turn ("close": the turn's calls are done, the demonstration reports back). The reply must
report what the turn produced, by recall of *salient values*:

- Salient values (`atoms`) are taken from the tool output(s) of the turn's last step, i.e. the result
  (parsed as JSON when they are JSON):
  every number; every short string (at most 3 words, no quotes) as a phrase; from a longer string its
  quoted parts and id-like tokens (a digit, or one of `_ . / @ #` inside, or ALL-CAPS) as phrases, and
  its remaining content words as one text value; dict keys that contain a digit (`USR002`). Booleans,
  null and generic words ("true", "none", "success", ...) are not values: a constant could say them.
- Matching (normalisation): case-insensitive; a phrase must occur with word boundaries; a number must
  occur as a number (thousands commas dropped) equal to the value at the precision the reply writes,
  and with at least min(2, the value's own) decimals, so "3" does not recall 3.14 but "3.14" recalls
  3.14159; a text value is recalled when >= 60% (`TEXT_WORD_FRACTION`) of its content words occur
  (light stemming: "moved" = "move").
- The rule: let S be the salient values of those outputs that the demonstration's own message
  mentions. The reply earns 1 when it recalls at least `RECALL_FRACTION` (half, rounded up, at least
  one) of S. When S is empty (the outputs were `None`, or the demonstration mentions none of them), S
  is taken from the argument values of the turn's calls instead (what was done: the file created,
  the amount sent); when that is empty too, the reply must name one of the called functions by a word
  of its name (`lockDoors` -> "lock" or "door"); a turn with no calls at all (small talk in chat
  data) needs a reply with a content word, or any reply where the demonstration has none either.
  A reply that declines ("cannot", "unable", ...) where the demonstration did not decline earns 0;
  so does one that lists more than
  `MAX_OTHER_ITEMS` (2) numbers or id-like tokens that occur nowhere in the turn (request, calls,
  outputs, tool names): stuffing a reply with frequent ids ("USR001 USR002 AAPL 12345") is guessing, not reporting.
  Because S is defined by what the demonstration mentions, with the same matcher, the demonstration
  always recalls all of S: it scores 1 against itself by construction (tested on all 800 entries).

Clarifying turn ("clarify": the request lacks a value or a function; BFCL's ground truth is empty).
The reply must ask (a question or a request such as "please provide") or decline, AND name what is
missing, by name or meaning:

- missing function (miss_func: `task["clarify_targets"]` names the held-out function): a word of the
  function's name (split at `_` and camelCase; generic words like "get" left out), or a distinctive
  word of the first sentence of its description (after BFCL's "Tool description:"; a word that occurs
  in at most `DISTINCTIVE_MAX_TOOLS` of the trajectory's tool descriptions: "sort" for `sort`, not
  "file"; when no word is that rare, any content word of that sentence);
- missing parameter (miss_param: the parameter whose value the user supplies in the next turn, found
  at conversion time, see `bfcl.clarify_targets`): a word of the parameter's name, or a distinctive
  word of the first sentence of its description;
- no recorded target (base / long_context turns that cannot be done, trajectories from elsewhere):
  a content word of the user's request of this turn (what cannot be done).
Generic words ("value", "name", "details", "information", ...) never count as naming anything, so
"Could you clarify?" or "Please provide the missing details." earn 0. A reply that also names more
than `MAX_OTHER_ITEMS` (2) other functions or parameters (words of the names of the trajectory's
tools, or of any tool the env knows, not explained by the missing item's name, its description or the request) is a list of guesses
("which file, directory, stock, user, flight or amount?") and earns 0.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Iterable
from typing import Any

RECALL_FRACTION = 0.5
TEXT_WORD_FRACTION = 0.6
DISTINCTIVE_MAX_TOOLS = 2
SHORT_PHRASE_WORDS = 3
MAX_OTHER_ITEMS = 2


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# words that say nothing specific: never salient values, never keywords of a missing item
STOPWORDS = _word_set("""
a an the and or but if then else of to in on at by for with from into onto over under about as is are was
were be been being am do does did done have has had having it its this that these those there here i me my
we our you your he she they them their his her him what which who whom whose when where why how all any some
each every no not nor only own same so than too very can could will would shall should may might must just
also now up down out off again once one two both few more most other such via per let please thank thanks
yes okay ok sure hello hi hey am let's i'm i've it's that's don't can't cannot unable
""")
GENERIC = _word_set("""
true false none null nil success successful successfully succeeded failed failure error ok okay done
complete completed completion task tasks request requests requested result results value values name names
number numbers type types data info information detail details specific specified current given new item
items parameter parameters param argument arguments function functions tool tools missing clarify
clarification clarifying need needed needs provide provided require required requires proceed want like get
set make use used using call called status message response output input thing things something string list
field fields option options way more further additional information else either whether kind
available availability
""")

_QUOTED_RE = re.compile(r"'([^']+)'|\"([^\"]+)\"|`([^`]+)`")
_NUMBER_RE = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?![\w])")
_NAME_PART_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_ID_CHARS = set("_./@#")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_./@#:+-]+")
_ASK_RE = re.compile(
    r"\?|\b(please (provide|specify|tell|clarify|confirm|share|let me know|give|add)|could you|can you|would you"
    r"|which|need (more|the|to know|your|a|an)|missing|clarif\w*|not (available|able|possible|supported)"
    r"|unable|cannot|can't|can not|don't have|do not have|no (function|tool)s?)\b", re.IGNORECASE)
_DECLINE_RE = re.compile(
    r"\b(cannot|can't|can not|unable|missing|not (available|able|possible|supported)|don't have|do not have"
    r"|no (function|tool)s? (to|for|that))\b", re.IGNORECASE)


def stem(word: str) -> str:
    """A light stemmer, the same on both sides of every comparison: files/filed/filing -> fil."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


_GENERIC_STEMS = frozenset(stem(w) for w in GENERIC | STOPWORDS)


def content_words(text: str) -> set[str]:
    """Stemmed words of `text` that carry content (no stopwords, no generic words, 3+ characters)."""
    out = set()
    for w in re.findall(r"[a-z][a-z0-9]*", text.lower()):
        if len(w) >= 3 and w not in STOPWORDS and w not in GENERIC:
            out.add(stem(w))
    return out


def name_parts(identifier: str) -> list[str]:
    """`get_stock_info` -> [get, stock, info]; `lockDoors` -> [lock, Doors]; `cityA` -> [city, A]."""
    return _NAME_PART_RE.findall(identifier)


def name_words(identifier: str) -> set[str]:
    """Stemmed content words of a function or parameter name: `get_stock_info` -> {stock},
    `lockDoors` -> {lock, door}. Falls back to all its words when every one is generic."""
    parts = [p.lower() for p in name_parts(identifier)]
    words = {stem(p) for p in parts if len(p) >= 2 and p not in STOPWORDS and p not in GENERIC}
    return words or {stem(p) for p in parts if len(p) >= 2}


def first_sentence(text: str) -> str:
    """The first sentence of a description; BFCL's tool docs open with "This tool belongs to ..." and
    say what the tool does after "Tool description:", so that part is used when present."""
    text = (text or "").split("Tool description:", 1)[-1]
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


# ----------------------------------------------------------------------------- the reply as seen by matchers

@dataclasses.dataclass(frozen=True)
class Reply:
    """A message prepared once for all matchers."""

    norm: str  # lowercase, whitespace collapsed
    words: frozenset[str]  # stemmed word set
    numbers: tuple[tuple[float, int], ...]  # (value, decimals written)

    @classmethod
    def of(cls, text: str) -> Reply:
        norm = " ".join((text or "").lower().split())
        words = frozenset(stem(w) for w in re.findall(r"[a-z0-9]+", norm))
        numbers = []
        for m in _NUMBER_RE.findall(norm):
            s = m.replace(",", "")
            try:
                v = float(s)
            except ValueError:
                continue
            numbers.append((v, len(s.split(".", 1)[1]) if "." in s else 0))
        return cls(norm, words, tuple(numbers))


@dataclasses.dataclass(frozen=True)
class Atom:
    """One salient value: a number, a phrase (matched whole) or a text (matched by its content words)."""

    kind: str  # "number" | "phrase" | "text"
    text: str
    number: float = 0.0
    decimals: int = 0
    words: frozenset[str] = frozenset()

    def found_in(self, reply: Reply) -> bool:
        if self.kind == "number":
            need = min(2, self.decimals)
            return any(d >= need and abs(v - self.number) <= 0.5 * 10 ** -d + 1e-9 for v, d in reply.numbers)
        if self.kind == "phrase":
            return self.text in reply.norm and self._pattern.search(reply.norm) is not None
        return len(self.words & reply.words) >= math.ceil(TEXT_WORD_FRACTION * len(self.words))

    @functools.cached_property
    def _pattern(self) -> re.Pattern[str]:
        return re.compile(r"(?<![a-z0-9])" + re.escape(self.text) + r"(?![a-z0-9])")


def _number_atom(v: float) -> Atom:
    r = repr(float(v))
    decimals = 0 if float(v).is_integer() or "e" in r else len(r.split(".", 1)[1])
    return Atom("number", r, float(v), decimals)


def _phrase(text: str) -> Atom | None:
    p = " ".join(text.lower().split()).strip(" .,;:!?()[]{}")
    if not p or p in GENERIC or p in STOPWORDS or (len(p) == 1 and not p.isdigit()):
        return None
    return Atom("phrase", p)


def _is_id_like(token: str) -> bool:
    core = token.strip(".,;:!?()[]{}")
    return (len(core) >= 2 and (any(c.isdigit() for c in core) or (core.isupper() and core.isalpha())
            or any(c in _ID_CHARS for c in core[1:-1])))


def string_atoms(s: str) -> list[Atom]:
    """Salient values of one string (rules in the module docstring)."""
    s = s.strip()
    if not s:
        return []
    if len(s.split()) <= SHORT_PHRASE_WORDS and not _QUOTED_RE.search(s):
        a = _phrase(s)
        return [a] if a else []
    out: list[Atom] = []
    for groups in _QUOTED_RE.findall(s):
        a = _phrase(next(g for g in groups if g))
        if a:
            out.append(a)
    rest = _QUOTED_RE.sub(" ", s)
    plain = []
    for tok in rest.split():
        if _is_id_like(tok):
            a = _phrase(tok)
            if a:
                out.append(a)
        else:
            plain.append(tok)
    words = content_words(" ".join(plain))
    if len(words) >= 2:
        out.append(Atom("text", " ".join(sorted(words)), words=frozenset(words)))
    return out


def value_atoms(value: Any) -> list[Atom]:
    """Salient values of a JSON value, depth first, de-duplicated in order."""
    out: list[Atom] = []

    def walk(v: Any) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)):
            if math.isfinite(v):
                out.append(_number_atom(v))
        elif isinstance(v, str):
            out.extend(string_atoms(v))
        elif isinstance(v, dict):
            for k, x in v.items():
                if any(c.isdigit() for c in str(k)):
                    a = _phrase(str(k))
                    if a:
                        out.append(a)
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(value)
    return list(dict.fromkeys(out))


def output_atoms(outputs: Iterable[str]) -> list[Atom]:
    """Salient values of tool outputs (JSON when they parse, else the raw text)."""
    out: list[Atom] = []
    for o in outputs:
        try:
            v = json.loads(o)
        except (TypeError, ValueError):
            v = o
        out.extend(value_atoms(v))
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------- the turn

@dataclasses.dataclass(frozen=True)
class MessageTurn:
    """What the message rules need to know about one message turn."""

    kind: str | None  # "close" | "clarify" | None (no message turn)
    request: str = ""  # the user's message(s) of this BFCL turn
    calls: tuple[tuple[str, dict], ...] = ()  # the demonstration's calls in this turn, before the message
    outputs: tuple[str, ...] = ()  # their outputs
    missing_functions: tuple[str, ...] = ()
    missing_parameters: tuple[tuple[str, str], ...] = ()  # (function, parameter)
    tools: tuple[dict, ...] = ()  # all the trajectory's tools (held-out ones included: for their docs)
    vocabulary: frozenset[str] = frozenset()  # schema words of every tool the env knows (beyond this trajectory)
    last_step_outputs: int = 1  # how many of `outputs` the turn's last step returned (the result to report)
    # what does not depend on the reply, computed once per turn (and reference text)
    _memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def salient(self, reference_content: str) -> list[tuple[str, list[Atom]]]:
        """[(source, atoms the reference mentions)] for outputs, then call arguments (closing rule)."""
        key = ("salient", reference_content)
        if key not in self._memo:
            ref = Reply.of(reference_content)
            last = self.outputs[len(self.outputs) - self.last_step_outputs:] if self.last_step_outputs else ()
            sources = (("the turn's last tool output(s)", output_atoms(last)),
                       ("the turn's call arguments", [a for _, args in self.calls for a in value_atoms(args)]))
            self._memo[key] = [(src, [a for a in dict.fromkeys(atoms) if a.found_in(ref)]) for src, atoms in sources]
        return self._memo[key]

    def known_values(self) -> tuple[str, frozenset[float]]:
        """(lowercased text of the request, calls, outputs and tool/parameter names; every number in
        them): what a value in a closing reply may come from."""
        if "known" not in self._memo:
            names = [n for t in self.tools for n in (t["function"]["name"], *t["function"].get("parameters", {})
                                                     .get("properties", {}))]
            parts = [self.request, *self.outputs, *(json.dumps([n, a], ensure_ascii=False) for n, a in self.calls),
                     *names]
            text = " ".join(parts).lower()
            numbers = {v for v, _ in Reply.of(text).numbers}
            numbers |= {a.number for a in output_atoms(self.outputs) if a.kind == "number"}
            self._memo["known"] = (text, frozenset(numbers))
        return self._memo["known"]

    def keywords(self) -> tuple[set[str], str]:
        if "keywords" not in self._memo:
            self._memo["keywords"] = clarify_keywords(self)
        return self._memo["keywords"]

    def distractors(self) -> set[str]:
        """Schema words that name something other than what is missing (clarifying rule)."""
        if "distractors" not in self._memo:
            known = schema_words(self.tools) | self.vocabulary
            self._memo["distractors"] = known - self.keywords()[0] - explained_words(self) - _GENERIC_STEMS
        return self._memo["distractors"]


def message_turn(messages: list[dict], assistant_index: int, kind: str | None, tools: Iterable[dict],
                 targets: dict | None = None, vocabulary: frozenset[str] = frozenset()) -> MessageTurn:
    """The MessageTurn of the assistant message at `messages[assistant_index]`: the request is the user
    message(s) right before this turn's first call; calls and outputs follow it."""
    start = assistant_index
    while start > 0 and messages[start - 1]["role"] != "user":
        start -= 1
    first_user = start
    while first_user > 0 and messages[first_user - 1]["role"] == "user":
        first_user -= 1
    request = "\n".join(m.get("content") or "" for m in messages[first_user:start])
    calls: list[tuple[str, dict]] = []
    outputs: list[str] = []
    last_step = 0  # index in `outputs` where the last step's outputs start
    for m in messages[start:assistant_index]:
        if m["role"] == "assistant":
            last_step = len(outputs)
            for c in m.get("tool_calls") or []:
                fn = c.get("function", {})
                args = fn.get("arguments")
                try:
                    args = json.loads(args) if isinstance(args, str) else (args or {})
                except ValueError:
                    args = {}
                calls.append((fn.get("name", ""), args if isinstance(args, dict) else {}))
        elif m["role"] == "tool":
            outputs.append(m.get("content") or "")
    targets = targets or {}
    return MessageTurn(kind, request, tuple(calls), tuple(outputs), tuple(targets.get("functions", [])),
                       tuple((f, p) for f, p in targets.get("parameters", [])), tuple(tools), vocabulary,
                       len(outputs) - last_step)


# ----------------------------------------------------------------------------- keywords of missing items

def _doc_word_counts(texts: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in texts:
        for w in content_words(first_sentence(t)):
            counts[w] = counts.get(w, 0) + 1
    return counts


def _described(description: str, counts: dict[str, int]) -> set[str]:
    words = content_words(first_sentence(description))
    distinctive = {w for w in words if counts.get(w, 0) <= DISTINCTIVE_MAX_TOOLS}
    return distinctive or words  # nothing distinctive ("List the contents of the directory"): all of them


def function_keywords(name: str, tools: Iterable[dict]) -> set[str]:
    tools = list(tools)
    by_name = {t["function"]["name"]: t["function"] for t in tools}
    counts = _doc_word_counts(t["function"].get("description", "") for t in tools)
    desc = by_name.get(name, {}).get("description", "")
    return name_words(name) | _described(desc, counts)


def parameter_keywords(function: str, parameter: str, tools: Iterable[dict]) -> set[str]:
    tools = list(tools)
    descs = [p.get("description", "") for t in tools
             for p in t["function"].get("parameters", {}).get("properties", {}).values()]
    counts = _doc_word_counts(descs)
    fn: dict = next((t["function"] for t in tools if t["function"]["name"] == function), {})
    desc = fn.get("parameters", {}).get("properties", {}).get(parameter, {}).get("description", "")
    return name_words(parameter) | _described(desc, counts)


def clarify_keywords(turn: MessageTurn) -> tuple[set[str], str]:
    """(keywords, what they stand for) a clarifying reply must use one of."""
    kw: set[str] = set()
    what = []
    for f in turn.missing_functions:
        kw |= function_keywords(f, turn.tools)
        what.append(f"function {f!r}")
    for f, p in turn.missing_parameters:
        kw |= parameter_keywords(f, p, turn.tools)
        what.append(f"parameter {p!r} of {f!r}")
    if not what:
        kw = content_words(turn.request)
        what.append("the request")
    return kw, ", ".join(what)


def schema_words(tools: Iterable[dict]) -> set[str]:
    """Name words of every function and parameter of the trajectory's tools."""
    out: set[str] = set()
    for t in tools:
        fn = t["function"]
        out |= name_words(fn["name"])
        for p in fn.get("parameters", {}).get("properties", {}):
            out |= name_words(p)
    return out


def explained_words(turn: MessageTurn) -> set[str]:
    """Words a reply about the missing item may use besides its keywords: the missing function's (or
    the parameter's function's) name and description, the parameter's description, the request."""
    docs = {t["function"]["name"]: t["function"] for t in turn.tools}
    out = content_words(turn.request)
    for f in [*turn.missing_functions, *(f for f, _ in turn.missing_parameters)]:
        out |= name_words(f) | content_words(first_sentence(docs.get(f, {}).get("description", "")))
    for f, p in turn.missing_parameters:
        prop = docs.get(f, {}).get("parameters", {}).get("properties", {}).get(p, {})
        out |= content_words(first_sentence(prop.get("description", "")))
    return out


# ----------------------------------------------------------------------------- the rules

def _recall(reply: Reply, salient: list[Atom]) -> tuple[int, int]:
    """(recalled, needed) over the salient atoms (RECALL_FRACTION of them, at least one)."""
    need = max(1, math.ceil(RECALL_FRACTION * len(salient)))
    return sum(a.found_in(reply) for a in salient), need


def _show(atoms: list[Atom]) -> str:
    return ", ".join(repr(a.text if a.kind != "number" else a.number) for a in atoms[:6]) + (
        ", ..." if len(atoms) > 6 else "")


def unexplained_values(content: str, reply: Reply, turn: MessageTurn) -> list[str]:
    """Numbers and id-like tokens of a reply that occur nowhere in the turn (request, arguments, outputs)."""
    text, numbers = turn.known_values()
    out = [f"{v:g}" for v, d in reply.numbers
           if not any(abs(v - n) <= 0.5 * 10 ** -d + 1e-9 for n in numbers)]
    for tok in _TOKEN_RE.findall(content):
        core = tok.strip(".,;:!?").lower()
        if _is_id_like(core) and not _NUMBER_RE.fullmatch(core) and core not in text:
            out.append(core)
    return out


def judge_closing(content: str, turn: MessageTurn, reference_content: str) -> tuple[bool, str]:
    reply = Reply.of(content)
    invented = unexplained_values(content, reply, turn)
    if len(invented) > MAX_OTHER_ITEMS:
        return False, (f"the closing message lists {len(invented)} values the turn never produced "
                       f"({invented[:6]}): a list of guesses is not a report")
    for source, salient in turn.salient(reference_content):
        if not salient:
            continue
        got, need = _recall(reply, salient)
        if got >= need:
            return True, f"closing message recalls {got}/{len(salient)} salient values of {source}"
        return False, (f"the closing message must report what the turn produced: it recalls {got} of "
                       f"{len(salient)} salient values of {source} (needs {need}; e.g. {_show(salient)})")
    names = set().union(*(name_words(n) for n, _ in turn.calls)) if turn.calls else set()
    if names:
        if names & reply.words:
            return True, "closing message names what was done (the turn's outputs carry no value to report)"
        return False, f"the closing message must say what was done: name one of {sorted(names)}"
    if content_words(content):
        return True, "closing message with content (nothing recorded to recall)"
    if not content_words(reference_content):  # small talk in chat data: the demonstration is no more specific
        return True, "a message where the demonstration's says nothing specific either (no call, nothing to recall)"
    return False, "the closing message says nothing specific"


def judge_clarifying(content: str, turn: MessageTurn) -> tuple[bool, str]:
    if not _ASK_RE.search(content):
        return False, "this turn needs a clarifying question (the request lacks a value or a function), got a statement"
    keywords, what = turn.keywords()
    words = Reply.of(content).words
    hit = keywords & words
    if not hit:
        return False, f"the clarifying message must name what is missing ({what}), by name or meaning"
    others = words & turn.distractors()
    if len(others) > MAX_OTHER_ITEMS:
        return False, (f"the clarifying message names {len(others)} other functions/parameters "
                       f"({sorted(others)[:6]}): a list of guesses does not say what is missing")
    return True, f"message asks for the missing {what} ({min(hit)!r})"


def judge_message(content: str, turn: MessageTurn, policy: str, reference_content: str = "") -> tuple[bool, str]:
    """Is a plain reply acceptable where the demonstration answers with a message? (module docstring)"""
    if policy == "any":
        return True, "reference is a message and the action is a message (message_policy='any')"
    text = (content or "").strip()
    if not text:
        return False, "empty message"
    if turn.kind == "clarify":
        return judge_clarifying(text, turn)
    if _DECLINE_RE.search(text) and not _DECLINE_RE.search(reference_content or ""):
        return False, "the request was doable (the demonstration completed it), but the message declines or asks for more"
    return judge_closing(text, turn, reference_content)
