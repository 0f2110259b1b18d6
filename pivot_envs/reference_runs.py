"""What a demonstration's effect is, learnt from running it twice.

A command's effect can differ between two runs of the *same* command in the *same* state: `$RANDOM`,
`mktemp` names, `uuidgen`, `date`, commit ids (`git commit` prints one; it depends on the time),
`sort -R`, `$$`, nanosecond clocks, hashes of any of these. A verifier that compares the sampled
action's effect to ONE run of the demonstration then scores the demonstration 0 against itself.

So the reference runs twice, in two forks of the same state, and what differs between the two runs
is left out of the comparison - in a way that still tells different work apart:

- **text** (stdout, the git summary, contents of small text files): where the two runs agree the
  action must agree literally; where they differ, the action may have any value made of the same
  kind of characters as the two reference values (digits, lower/upper hex, letters and digits,
  non-space, one line, anything), so `echo $RANDOM` matches a number but not a word. Lines compare
  one by one when both runs have the same number of lines. When the two runs printed the same
  lines in a different order (`sort -R`, `shuf`), the order is left out: the action must print the
  same multiset of lines;
- **present time**: timestamps of the moment the command ran (the `date` format, ISO 8601, `ls -l`
  times, epoch seconds or milliseconds within a day of now; a bare HH:MM:SS within 15 min) are replaced by `<now>` before
  comparing, because two runs a few milliseconds apart often print the same second and a third run
  may not; timestamps far from now are data and are compared;
- **paths** that exist after one run only (`mktemp`, uuid-named files) are paired (sorted order) and
  matched by name pattern the same way; their kind and mode must agree with the pair, their content
  as for text files. When the two runs made different numbers of such paths, paths outside the
  common set are left out altogether;
- **commit ids**: (abbreviated) ids of the repositories' commits are replaced by `<commit>`;
- **file contents** that differ between the runs are compared as text patterns when both are UTF-8
  and at most `TEXT_LIMIT` bytes; otherwise only kind and mode are compared (the content is left out).
  A file the demonstration changed (against the state before it) whose text holds a present
  timestamp or a commit id is compared masked even when both runs wrote the same bytes;
- **exit statuses**: the action must fail the same way one of the two runs did.

Limits of two samples: a value with few possible outcomes can repeat by chance (`shuf -n1` of
three lines agrees with itself one time in three; the demonstration then fails against a third run
that differs), and a constant that is a possible value of the random one passes (`echo 0.5`
against `python3 -c 'print(random.random())'`: both are "0.<digits>").
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import difflib
import re
import time
from collections.abc import Callable

from pivot_envs.effects import Outcome, normalise_output
from pivot_envs.sandbox.base import FileEntry

TEXT_LIMIT = 256 * 1024  # larger non-deterministic files are compared by kind and mode only
PRESENT_WINDOW_S = 24 * 3600  # a dated timestamp this close to now is "the present", not data
CLOCK_WINDOW_S = 15 * 60  # a bare time of day (HH:MM:SS) this close to now's is "the present"

_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
_CLASSES = (  # (characters allowed, regex class): the first that holds all seen characters wins
    (frozenset("0123456789"), "[0-9]"),
    (frozenset("0123456789abcdef"), "[0-9a-f]"),
    (frozenset("0123456789ABCDEF"), "[0-9A-F]"),
    (frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"), "[A-Za-z0-9]"),
)


def _char_class(seen: set[str]) -> tuple[frozenset[str] | None, str]:
    """The narrowest class of `_CLASSES` that holds `seen` (allowed characters, regex class)."""
    for chars, cls in _CLASSES:
        if seen <= chars:
            return chars, cls
    if not any(ch.isspace() for ch in seen):
        return None, r"\S"
    return None, "[^\n]" if "\n" not in seen else r"[\s\S]"


def _wildcard(a: str, b: str) -> str:
    """A regex for any value of the kind of characters seen in `a` and `b` (the two runs' values)."""
    return _char_class(set(a + b))[1] + ("+?" if a and b else "*?")


def _positional_regex(ta: list[str], tb: list[str]) -> str:
    """Token streams of equal length, compared position by position. A word that is equal in both
    runs but sits between varying words of its own kind (a random byte that happened to repeat in
    `od` output) is presumed to vary too: two samples cannot tell a coincidence from a constant."""
    vary = [x != y for x, y in zip(ta, tb)]
    words = [i for i, x in enumerate(ta) if x[0].isalnum() or x[0] == "_"]
    for pos, i in enumerate(words):
        if vary[i]:
            continue
        near = [words[q] for q in (pos - 1, pos + 1) if 0 <= q < len(words)]
        if near and all(vary[j] for j in near):
            allowed, _ = _char_class(set("".join(ta[j] + tb[j] for j in near)))
            if allowed is not None and set(ta[i]) <= allowed:
                vary[i] = True
    # Varying words share one class: the bytes 67 and 28 of `od` output are hex like the other
    # varying bytes of the line, though both happen to be digits.
    words_seen = "".join(ta[i] + tb[i] for i in words if vary[i])
    seen = {i: ta[i] + tb[i] + (words_seen if i in words else "") for i in range(len(ta)) if vary[i]}
    return "".join((_char_class(set(seen[i]))[1] + ("+?" if x and y else "*?")) if vary[i] else re.escape(x)
                   for i, (x, y) in enumerate(zip(ta, tb)))


def _token_regex(a: str, b: str) -> str:
    """Literal where the token streams of `a` and `b` agree, `_wildcard` where they differ."""
    ta, tb = _TOKEN.findall(a), _TOKEN.findall(b)
    if len(ta) == len(tb):
        return _positional_regex(ta, tb)
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(re.escape("".join(ta[i1:i2])))
        else:
            parts.append(_wildcard("".join(ta[i1:i2]), "".join(tb[j1:j2])))
    return "".join(parts)


class TextPattern:
    """A text as two runs of the same command produced it (see the module docstring)."""

    def __init__(self, a: str, b: str):
        self.literal: str | None = a if a == b else None
        self.unordered: collections.Counter[str] | None = None
        self.lines: list[re.Pattern[str]] | None = None
        self.whole: re.Pattern[str] | None = None
        if self.literal is not None:
            return
        la, lb = a.split("\n"), b.split("\n")
        if collections.Counter(la) == collections.Counter(lb):
            self.unordered = collections.Counter(la)
        elif len(la) == len(lb):
            self.lines = [re.compile(re.escape(x) if x == y else _token_regex(x, y)) for x, y in zip(la, lb)]
        else:
            self.whole = re.compile(_token_regex(a, b))

    @property
    def deterministic(self) -> bool:
        return self.literal is not None

    def matches(self, text: str) -> bool:
        if self.literal is not None:
            return text == self.literal
        if self.unordered is not None:
            return collections.Counter(text.split("\n")) == self.unordered
        if self.lines is not None:
            lines = text.split("\n")
            return len(lines) == len(self.lines) and all(p.fullmatch(x) for p, x in zip(self.lines, lines))
        assert self.whole is not None
        return self.whole.fullmatch(text) is not None


# ---------------------------------------------------------------------------------------- present time
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_DAYS = "Mon|Tue|Wed|Thu|Fri|Sat|Sun"
_MONTH_NUM = {m: i + 1 for i, m in enumerate(_MONTHS.split("|"))}
_DATE_CMD = re.compile(rf"\b(?:{_DAYS}) ({_MONTHS}) +(\d{{1,2}}) (\d\d):(\d\d):(\d\d)(?: [A-Z]{{2,5}})? (\d{{4}})\b")
_ISO = re.compile(r"\b(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?")
_LS_TIME = re.compile(rf"\b({_MONTHS}) +(\d{{1,2}}) (\d\d):(\d\d)\b")
_CLOCK = re.compile(r"\b(\d\d):(\d\d):(\d\d)(?:\.\d+)?\b")
_EPOCH = re.compile(r"\b1\d{9}(?:\d{3}|\d{6}|\d{9})?(?:\.\d+)?\b")


def _near(t: dt.datetime, now: float) -> bool:
    return abs(t.replace(tzinfo=dt.UTC).timestamp() - now) <= PRESENT_WINDOW_S


def _sub(pattern: re.Pattern[str], text: str, is_present: Callable[[re.Match[str]], bool],
         kept: list[str]) -> str:
    """Replace present timestamps by `<now>`; set the others aside in `kept` (a placeholder stands in
    for them) so that a later, looser pattern cannot mask a part of a dated timestamp."""

    def replace(m: re.Match[str]) -> str:
        if is_present(m):
            return "<now>"
        kept.append(m.group(0))
        return f"\x00{len(kept) - 1}\x00"

    return pattern.sub(replace, text)


def mask_present_time(text: str, now: float | None = None) -> str:
    """Replace timestamps of the present moment (within `PRESENT_WINDOW_S` of `now`) by `<now>`.
    Times are read as UTC or as the host's local time (either close to now counts)."""
    if not text or not any(ch.isdigit() for ch in text):
        return text
    now = time.time() if now is None else now
    offset = dt.datetime.now().astimezone().utcoffset() or dt.timedelta()
    stamps = (now, now + offset.total_seconds())  # a naive time may be UTC or local

    def close(*fields: int) -> bool:
        try:
            t = dt.datetime(*fields)  # type: ignore[arg-type]
        except ValueError:
            return False
        return any(_near(t, s) for s in stamps)

    year = dt.datetime.fromtimestamp(now, dt.UTC).year
    kept: list[str] = []
    text = _sub(_DATE_CMD, text, lambda m: close(int(m[6]), _MONTH_NUM[m[1]], int(m[2]), int(m[3]), int(m[4]),
                                                int(m[5])), kept)
    text = _sub(_ISO, text, lambda m: close(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0)),
                kept)
    text = _sub(_LS_TIME, text, lambda m: close(year, _MONTH_NUM[m[1]], int(m[2]), int(m[3]), int(m[4])), kept)

    def clock_is_now(m: re.Match[str]) -> bool:
        secs = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        day = [(s % 86400) for s in stamps]
        return any(min(abs(secs - d), 86400 - abs(secs - d)) <= CLOCK_WINDOW_S for d in day)

    text = _sub(_CLOCK, text, clock_is_now, kept)

    def epoch_is_now(m: re.Match[str]) -> bool:
        digits = m[0].split(".")[0]
        return abs(int(digits) / 10 ** (len(digits) - 10) - now) <= PRESENT_WINDOW_S

    text = _sub(_EPOCH, text, epoch_is_now, kept)
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m[1])], text) if kept else text


# ---------------------------------------------------------------------------------------- reference
@dataclasses.dataclass
class _PathPair:
    """One path as the two reference runs left it (same name, or paired extras)."""

    name: TextPattern
    kind: str | None  # None: the two runs disagree, not compared
    mode: int | None
    digest: str | None  # set when both runs have the same content
    content: TextPattern | None  # when the contents differ but are both small text

    def accepts(self, entry: FileEntry, path: str, read: Callable[[str], str | None],
                mask: Callable[[str], str]) -> bool:
        if self.kind is not None and entry.kind != self.kind:
            return False
        if self.mode is not None and entry.mode != self.mode:
            return False
        if self.digest is not None:
            return entry.digest == self.digest
        if self.content is not None:
            got = read(path)
            return got is not None and self.content.matches(mask(got))
        return True


_HEX_ID = re.compile(r"\b[0-9a-f]{7,40}\b")


def mask_commit_ids(text: str, commits: frozenset[str]) -> str:
    """Replace (abbreviated) ids of `commits` in `text` by `<commit>`: a commit id hashes the commit
    time, so it differs between runs of the same `git commit`."""
    if not commits:
        return text
    return _HEX_ID.sub(lambda m: "<commit>" if any(c.startswith(m[0]) for c in commits) else m[0], text)


def masker(outcome: Outcome) -> Callable[[str], str]:
    """What is masked in the texts of one run: its commit ids and timestamps of the present."""
    return lambda text: mask_present_time(mask_commit_ids(text, outcome.commits))


def _output(outcome: Outcome) -> str:
    return masker(outcome)(normalise_output(outcome.stdout))


def timed_out(outcome: Outcome) -> bool:
    """Did any of the commands run past its time limit?"""
    return outcome.timed_out or -1 in outcome.exit_codes


def failures(outcome: Outcome) -> tuple[int, ...]:
    """The action's exit statuses that were failures, in order (-1 = timed out). Successful commands
    do not count, so one call `a && b` and two calls `a`, `b` have the same status."""
    codes = outcome.exit_codes or (outcome.exit_code,)
    return tuple(c for c in codes if c != 0)


@dataclasses.dataclass
class Mismatch:
    facet: str  # "exit status" | "file-system" | "git" | "output"
    detail: str


class ReferenceEffect:
    """The demonstration's effect as two runs `a`, `b` agree on; `check(got)` compares an action's.

    `read_a(path)` / `read_b(path)` return a file's text in the runs' sandboxes (None: not small text);
    they are called here, while those sandboxes are open, only for files whose contents differ."""

    def __init__(self, a: Outcome, b: Outcome, read_a: Callable[[str], str | None],
                 read_b: Callable[[str], str | None], base: dict[str, FileEntry] | None = None):
        self.base = base
        self.exit_options = {failures(a), failures(b)}
        self.timed_out = timed_out(a) or timed_out(b)
        self.disk_full = a.disk_full or b.disk_full
        self.stdout = TextPattern(_output(a), _output(b))
        self.git = TextPattern(masker(a)(a.git), masker(b)(b.git))
        self.exact: dict[str, _PathPair] = {}
        self.renamed: list[_PathPair] = []
        common = a.files.keys() & b.files.keys()
        for p in sorted(common):
            self.exact[p] = self._pair(TextPattern(p, p), a.files[p], b.files[p], (p, read_a), (p, read_b), a, b,
                                       base)
        only_a = sorted(a.files.keys() - common)
        only_b = sorted(b.files.keys() - common)
        self.unpaired = len(only_a) != len(only_b)
        for pa, pb in zip(only_a, only_b):
            self.renamed.append(self._pair(TextPattern(pa, pb), a.files[pa], b.files[pb], (pa, read_a), (pb, read_b),
                                           a, b, None))
        self.nondeterministic = sorted(
            ["output"] * (not self.stdout.deterministic) + ["git"] * (not self.git.deterministic)
            + [p for p, pair in self.exact.items() if pair.digest is None]
            + [f"{pa} ~ {pb}" for pa, pb in zip(only_a, only_b)])

    @staticmethod
    def _pair(name: TextPattern, ea: FileEntry, eb: FileEntry, where_a: tuple[str, Callable[[str], str | None]],
              where_b: tuple[str, Callable[[str], str | None]], a: Outcome, b: Outcome,
              base: dict[str, FileEntry] | None) -> _PathPair:
        kind = ea.kind if ea.kind == eb.kind else None
        mode = ea.mode if ea.mode == eb.mode else None
        if ea.digest == eb.digest:
            # Both runs wrote the same bytes. If those bytes hold a present timestamp or a commit id
            # (two runs within one second agree on both), a later run differs there: compare masked.
            changed = base is not None and base.get(where_a[0]) != ea
            if kind == "file" and changed and not ea.digest.startswith("archive:"):
                ta = where_a[1](where_a[0])
                if ta is not None and masker(a)(ta) != ta:
                    return _PathPair(name, kind, mode, None, TextPattern(masker(a)(ta), masker(b)(ta)))
            return _PathPair(name, kind, mode, ea.digest, None)
        content = None
        if kind == "file":
            ta, tb = where_a[1](where_a[0]), where_b[1](where_b[0])
            if ta is not None and tb is not None:
                content = TextPattern(masker(a)(ta), masker(b)(tb))
        return _PathPair(name, kind, mode, None, content)

    def check(self, got: Outcome, read: Callable[[str], str | None]) -> Mismatch | None:
        """None when `got` has this effect; otherwise the first facet that differs."""
        if failures(got) not in self.exit_options:
            ref = min(self.exit_options)
            return Mismatch("exit status", f"failing exit statuses {list(failures(got)) or 'none'} differ from the "
                                           f"demonstration's {list(ref) or 'none'}")
        bad = self._check_files(got, read)
        if bad:
            return Mismatch("file-system", ", ".join(bad[:5]))
        if not self.git.matches(masker(got)(got.git)):
            return Mismatch("git", "HEAD tree, branches, index or status")
        if not self.stdout.matches(_output(got)):
            return Mismatch("output", "stdout")
        return None

    def _check_files(self, got: Outcome, read: Callable[[str], str | None]) -> list[str]:
        bad = []
        for p, pair in self.exact.items():
            entry = got.files.get(p)
            if entry is None:
                bad.append(f"{p} (only in reference)")
            elif not pair.accepts(entry, p, read, masker(got)):
                bad.append(f"{p} (differs)")
        extra = sorted(got.files.keys() - self.exact.keys())
        left = list(self.renamed)
        for p in extra:
            entry = got.files[p]
            match = next((pair for pair in left if pair.name.matches(p)
                          and pair.accepts(entry, p, read, masker(got))), None)
            if match is not None:
                left.remove(match)
            elif not self.unpaired:
                bad.append(f"{p} (only in action)")
        if left and not self.unpaired:
            bad.extend(f"{pair.name.literal or 'a path made by the demonstration'} (only in reference)"
                       for pair in left)
        return bad
