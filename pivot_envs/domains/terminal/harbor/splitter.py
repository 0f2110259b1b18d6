"""Cut a solve.sh into the steps of an expert trajectory.

Each step of a converted trajectory runs in a fresh shell, like an agent's command (see BASH_TOOL),
while solve.sh ran as one script. So:

* `_chunks` cuts the script into top-level commands; multi-line constructs stay whole: heredocs
  (quoted or not, `<<-`), here-strings (`<<<`, which are NOT heredocs), `if/fi`, `for|while|until/done`,
  `case/esac`, `{ }` and `( )` groups, `$( )`, quotes spanning lines, multi-line arrays `a=( ... )`,
  line continuations and trailing `&&`, `||`, `|`.
* State-setting commands are not steps: they are carried, in order, as a prefix of every later step
  (re-evaluated there; a variable's assignment only reaches steps that read it, directly or through
  other carried state): `cd`/`pushd`/`popd`, `source`/`.`, assignments (arrays included), `export`/
  `declare`/`readonly`/`local`/`typeset`, `read ... <<< word` / `read ... < file`, `mapfile`/
  `readarray`, `shopt`, `umask`, `alias`, `trap`, and `set` options other than -e/-x/-v.
* A block (`for`/`while`/`until`/`if`/`case`/`{ }`) that assigns variables a later command reads and
  changes nothing else (no output redirection to a file, none of the file-changing commands in
  `_MUTATING_RE`) is state too, e.g. a `while read` loop that sums a column: carried, not a step.
  A block that also changes files stays a step, and what it assigns is not carried (said in the
  README); the converter's final test run catches a solution that depended on it.
* A `cd DIR && ...` chain (cd anywhere before an `&&`) leaves the script in DIR, so `cd DIR` joins
  the prefix after that step.
* Function definitions reach only the steps that call them (transitively).
* `set -e` (`-o errexit`) is not carried; its meaning is kept: `stop_on_error`, recording stops at the
  first failing step. A top-level `exit` / `exit 0` ends the script: later lines are dropped.
"""

from __future__ import annotations

import dataclasses
import re

from pivot_envs.domains.terminal.harbor.task import HarborTaskError


@dataclasses.dataclass(frozen=True)
class SolutionScript:
    """A solve.sh cut into steps. `stop_on_error`: the script had `set -e` (or `-o errexit`)."""

    steps: list[str]
    stop_on_error: bool


_OPENERS = {"if", "for", "while", "until", "case", "select", "{"}
_CLOSERS = {"fi", "done", "esac", "}"}
_KEEP_CMD_POS = {"then", "do", "else", "elif", "if", "while", "until", "!", "{", "time", "}", "fi", "done", "esac"}
_WORD_RE = re.compile(r"[^\s;&|()<>'\"`\\$#]+")
_HEREDOC_RE = re.compile(r"<<(-?)\s*(?:'([^']*)'|\"([^\"]*)\"|\\?([A-Za-z_0-9.-]+))")
_FUNCTION_HEADER_RE = re.compile(r"^\s*(function\s+[A-Za-z_][\w-]*(\s*\(\s*\))?|[A-Za-z_][\w-]*\s*\(\s*\))\s*$")


class _Scanner:
    """Tracks bash nesting over lines: quotes, $( ) and ( ), keyword blocks, heredocs."""

    def __init__(self) -> None:
        self.stack: list[str] = []  # "'", '"', "`", "$(", "("
        self.depth = 0  # keyword / brace-group blocks
        self.cmd_pos = True
        self.heredocs: list[tuple[str, bool]] = []
        self.continued = False
        self.last_op = ""
        self.function_name_next = False

    def feed(self, line: str) -> None:
        """Scan one physical line (without its newline)."""
        i, n = 0, len(line)
        if not self.continued and not self.stack:
            self.cmd_pos = True  # a newline separates commands, unless the line was continued
        self.continued = False
        self.last_op = ""
        while i < n:
            c = line[i]
            top = self.stack[-1] if self.stack else None
            if top == "'":
                if c == "'":
                    self.stack.pop()
                i += 1
                continue
            if top in ('"', "`"):
                if c == "\\":
                    i += 2
                    continue
                if c == top:
                    self.stack.pop()
                elif c == "$" and line.startswith("$(", i):
                    self.stack.append("$(")
                    self.cmd_pos = True
                    i += 2
                    continue
                elif c == "`" and top == '"':
                    self.stack.append("`")
                i += 1
                continue
            # normal mode (top level, or inside $( ) / ( ))
            if c == "\\":
                if i == n - 1:
                    self.continued = True
                i += 2
                self.cmd_pos = False
                continue
            if c in " \t":
                i += 1
                continue
            if c == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
                break  # comment to end of line
            if c in "'\"`":
                self.stack.append(c)
                self.cmd_pos = False
                self.last_op = ""
                i += 1
                continue
            if c == "$":
                if line.startswith("$(", i):
                    self.stack.append("$(")
                    self.cmd_pos = True
                    i += 2
                    continue
                if line.startswith("${", i):
                    j, braces = i + 2, 1
                    while j < n and braces:
                        braces += {"{": 1, "}": -1}.get(line[j], 0)
                        j += 1
                    i = j
                    self.cmd_pos = False
                    continue
                i += 1
                self.cmd_pos = False
                continue
            if c == "(":
                self.stack.append("(")
                self.cmd_pos = True
                i += 1
                continue
            if c == ")":
                if self.stack and self.stack[-1] in ("(", "$("):
                    self.stack.pop()
                self.cmd_pos = True  # also a case pattern's ')'
                i += 1
                continue
            if c == "<":
                if line.startswith("<<<", i):  # a here-string: its word follows on the same line
                    i += 3
                    self.cmd_pos = False
                    continue
                m = _HEREDOC_RE.match(line, i)
                if m:
                    delim = next(g for g in m.group(2, 3, 4) if g is not None)
                    self.heredocs.append((delim, m.group(1) == "-"))
                    i = m.end()
                    continue
                i += 1
                continue
            if c in ";&|>":
                op = line[i:i + 2] if line[i:i + 2] in ("&&", "||", ";;", ">>", "|&") else c
                self.last_op = op
                self.cmd_pos = op not in (">", ">>")
                i += len(op)
                continue
            m = _WORD_RE.match(line, i)
            if not m:
                i += 1
                continue
            word = m.group(0)
            i = m.end()
            self.last_op = ""
            if self.function_name_next:  # `function name {`: the body's '{' is at command position
                self.function_name_next = False
                self.cmd_pos = True
                continue
            if self.cmd_pos:
                if word == "function":
                    self.function_name_next = True
                if word in _OPENERS:
                    self.depth += 1
                elif word in _CLOSERS:
                    self.depth = max(0, self.depth - 1)
                self.cmd_pos = word in _KEEP_CMD_POS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word) is not None

    @property
    def complete(self) -> bool:
        return (not self.stack and self.depth == 0 and not self.heredocs and not self.continued
                and self.last_op not in ("&&", "||", "|", "|&"))


def _chunks(script: str) -> list[str]:
    """Top-level commands of `script` (multi-line constructs kept whole; blank and comment-only
    lines between commands dropped)."""
    chunks: list[str] = []
    buf: list[str] = []
    scanner = _Scanner()
    lines = script.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf.append(line)
        scanner.feed(line)
        while scanner.heredocs:  # bodies follow the line that opened them, in order
            delim, strip_tabs = scanner.heredocs.pop(0)
            while i < len(lines):
                body = lines[i]
                i += 1
                buf.append(body)
                if (body.lstrip("\t") if strip_tabs else body) == delim:
                    break
            else:
                raise HarborTaskError(f"solve.sh: heredoc delimited by {delim!r} is never closed")
        if scanner.complete and not (len(buf) == 1 and _FUNCTION_HEADER_RE.match(buf[0])):
            chunks.append("\n".join(buf))
            buf = []
    if buf:
        raise HarborTaskError("solve.sh ends inside an unfinished construct (unclosed quote, if/for/while "
                              "block, brace or line continuation):\n" + "\n".join(buf)[-500:])
    return chunks


# ----------------------------------------------------------------------------- words of a simple command

_OPERATORS = ("&&", "||", ";;", "|&", ";", "&", "|")
_REDIRECTS = ("<<<", "<", ">>", ">")


def _words(chunk: str) -> list[str] | None:
    """The words of `chunk` when it is ONE simple command (redirections are words of their own:
    "<<<", "<", ">", ">>"); None when it has top-level operators, heredocs or keyword blocks.
    Quotes, `$( )`, `${ }`, backticks and array parentheses `name=( ... )` stay inside their word;
    comments and line continuations are dropped."""
    words: list[str] = []
    cur: list[str] = []
    i, n = 0, len(chunk)

    def flush() -> None:
        if cur:
            words.append("".join(cur))
            cur.clear()

    def skip_group(j: int, open_c: str, close_c: str) -> int:
        """Index just past the `close_c` matching the `open_c` at j, respecting quotes."""
        depth, k = 0, j
        while k < n:
            ch = chunk[k]
            if ch == "\\":
                k += 2
                continue
            if ch == "'" and open_c != "'":
                end = chunk.find("'", k + 1)
                if end < 0:
                    return n
                k = end + 1
                continue
            if ch == '"' and open_c != '"':
                k = skip_quoted(k)
                continue
            if ch == open_c:
                depth += 1
            elif ch == close_c:
                depth -= 1
                if depth == 0:
                    return k + 1
            k += 1
        return n

    def skip_quoted(j: int) -> int:
        k = j + 1
        while k < n and chunk[k] != '"':
            if chunk[k] == "\\":
                k += 1
            elif chunk.startswith("$(", k):
                k = skip_group(k + 1, "(", ")") - 1
            k += 1
        return k + 1

    while i < n:
        c = chunk[i]
        if c == "\\":
            if chunk.startswith("\\\n", i):  # line continuation
                i += 2
                continue
            cur.append(chunk[i:i + 2])
            i += 2
            continue
        if c in " \t\n":
            if c == "\n":  # a newline between commands: not one simple command
                rest = chunk[i + 1:].strip()
                if rest and not rest.startswith("#"):
                    return None
            flush()
            i += 1
            continue
        if c == "#" and not cur:
            end = chunk.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "'":
            end = chunk.find("'", i + 1)
            end = n if end < 0 else end + 1
            cur.append(chunk[i:end])
            i = end
            continue
        if c == '"':
            end = skip_quoted(i)
            cur.append(chunk[i:end])
            i = end
            continue
        if c == "`":
            end = chunk.find("`", i + 1)
            end = n if end < 0 else end + 1
            cur.append(chunk[i:end])
            i = end
            continue
        if c == "$" and chunk.startswith("$(", i):
            end = skip_group(i + 1, "(", ")")
            cur.append(chunk[i:end])
            i = end
            continue
        if c == "$" and chunk.startswith("${", i):
            end = skip_group(i + 1, "{", "}")
            cur.append(chunk[i:end])
            i = end
            continue
        if c == "(":
            joined = "".join(cur)
            if re.fullmatch(r"[A-Za-z_]\w*(\[[^\]]*\])?\+?=", joined):  # array assignment
                end = skip_group(i, "(", ")")
                cur.append(chunk[i:end])
                i = end
                continue
            return None  # a subshell, or a function definition
        if c == ")":
            return None
        if chunk.startswith(("<(", ">("), i):  # process substitution: one word
            end = skip_group(i + 1, "(", ")")
            cur.append(chunk[i:end])
            i = end
            continue
        if chunk.startswith("<<<", i) or c in "<>":
            if chunk.startswith("<<", i) and not chunk.startswith("<<<", i):
                return None  # heredoc
            op = next(r for r in _REDIRECTS if chunk.startswith(r, i))
            if cur and re.fullmatch(r"\d+", "".join(cur)):  # 2> / 1>>: the fd is part of the redirect
                cur.clear()
            flush()
            words.append(op)
            i += len(op)
            if op in (">", ">>") and chunk.startswith("&", i):
                i += 1
            continue
        if any(chunk.startswith(op, i) for op in _OPERATORS):
            return None
        cur.append(c)
        i += 1
    flush()
    return words


_ASSIGNMENT_WORD = re.compile(r"[A-Za-z_]\w*(\[[^\]]*\])?\+?=.*", flags=re.DOTALL)
_DECLARERS = {"export", "readonly", "declare", "typeset", "local"}
_CONTEXT_COMMANDS = {"cd", "pushd", "popd", "source", ".", "shopt", "umask", "alias", "unalias", "trap",
                     "mapfile", "readarray"}
_NO_CARRY_SET_FLAGS = set("exv")  # -e becomes stop_on_error; -x/-v only add trace noise


def _is_state(words: list[str]) -> bool:
    """Does this simple command only set shell state that later commands of the script read?"""
    rest = list(words)
    while rest and _ASSIGNMENT_WORD.fullmatch(rest[0]):
        rest.pop(0)
    if not rest:
        return True  # only assignments
    head = rest[0]
    if head in _DECLARERS:
        return all(w.startswith(("-", "+")) or _ASSIGNMENT_WORD.fullmatch(w) or re.fullmatch(r"[A-Za-z_]\w*", w)
                   for w in rest[1:])
    if head == "read":  # `read -r a b <<< "$x"`, `IFS=, read -ra parts < file`
        return "<<<" in rest or "<" in rest
    if head in ("mapfile", "readarray"):
        return "<" in rest or "<<<" in rest
    if any(w in (">", ">>") and (i + 1 >= len(rest) or rest[i + 1] != "/dev/null") for i, w in enumerate(rest)):
        return False  # writes a file: a step
    return head in _CONTEXT_COMMANDS


def _set_options(words: list[str]) -> tuple[bool, str | None]:
    """(`set -e` present, the `set` command to carry without -e/-x/-v, or None)."""
    errexit, kept, i = False, [], 1
    while i < len(words):
        w = words[i]
        if w in ("-o", "+o") and i + 1 < len(words):
            name = words[i + 1]
            if name == "errexit":
                errexit = errexit or w == "-o"
            elif name not in ("xtrace", "verbose"):
                kept.append(f"{w} {name}")
            i += 2
            continue
        if re.fullmatch(r"[-+][A-Za-z]+", w):
            errexit = errexit or (w[0] == "-" and "e" in w)
            flags = "".join(f for f in w[1:] if f not in _NO_CARRY_SET_FLAGS)
            if flags:
                kept.append(w[0] + flags)
        else:
            kept.append(w)
        i += 1
    return errexit, ("set " + " ".join(kept)) if kept else None


def _functions_used(chunk: str, functions: dict[str, str]) -> list[str]:
    """Definitions of the functions `chunk` calls, directly or through other functions, in
    definition order."""
    def calls(text: str, name: str) -> bool:
        return re.search(rf"(^|[\s;&|(`]){re.escape(name)}($|[\s;&|)`])", text, flags=re.MULTILINE) is not None

    needed: set[str] = set()
    frontier = [chunk]
    while frontier:
        text = frontier.pop()
        for name, definition in functions.items():
            if name not in needed and calls(text, name):
                needed.add(name)
                frontier.append(definition)
    return [d for name, d in functions.items() if name in needed]


_FUNCTION_RE = re.compile(r"^(function\s+([A-Za-z_][\w-]*)|([A-Za-z_][\w-]*)\s*\(\s*\))")
_CD_CHAIN_RE = re.compile(r"(?:^|&&)\s*((?:cd|pushd)\s+(?:'[^']*'|\"[^\"]*\"|[^\s;&|'\"()]+))\s*(?=&&)")


_BLOCK_START_RE = re.compile(r"^(for|while|until|if|case|select|\{)(\s|$)")
_ASSIGNED_RE = re.compile(r"(?:^|[\s;&|(])(?:(?:local|declare|export|readonly)\s+(?:-\w+\s+)*)?([A-Za-z_]\w*)"
                          r"(?:\[[^\]]*\])?\+?=|\bread\s+(?:-[A-Za-z]*[dptnNu]\s+\S+\s+|-[A-Za-z]+\s+)*((?:[A-Za-z_]\w*[ \t]*)+)"
                          r"|\b(?:mapfile|readarray)\s+(?:-\w+\s+)*([A-Za-z_]\w*)", flags=re.MULTILINE)
_MUTATING_RE = re.compile(r"(?<![\w./-])(rm|mv|cp|mkdir|rmdir|touch|tee|chmod|chown|ln|sed\s+-i|git|pip3?|apt(-get)?"
                          r"|tar|unzip|zip|gzip|gunzip|curl|wget|python3?|perl|sqlite3|make|dd|truncate|install|patch"
                          r"|cd|pushd|popd)(?![\w-])|(?<![<&0-9])[0-9]?>{1,2}(?!\s*&|\s*/dev/null)")


def _assigned_names(text: str) -> set[str]:
    names: set[str] = set()
    for m in _ASSIGNED_RE.finditer(text):
        for group in m.groups():
            names.update(group.split() if group else [])
    return names


_ARITH_OR_EXPANSION_RE = re.compile(r"\(\((.*?)\)\)|\$\{([^}]*)\}|\[\[(.*?)\]\]", flags=re.DOTALL)


def _reads(text: str, names: set[str]) -> bool:
    """Might `text` read one of `names`: `$x`, `${x...}`, or a bare `x` inside `(( ))`, `${ }` (array
    indices) or `[[ ]]` (over-inclusion only carries an assignment that was not needed)."""
    if not names:
        return False
    regions = "\n".join(g for m in _ARITH_OR_EXPANSION_RE.finditer(text) for g in m.groups() if g)
    for n in names:
        name = re.escape(n)
        if re.search(rf"\$\{{?[!#]?{name}(?!\w)", text) or re.search(rf"(?<![\w$-]){name}(?!\w)", regions):
            return True
    return False


def _pure_block_state(chunk: str, later: list[str]) -> bool:
    """Is `chunk` a block that only assigns variables some later chunk reads (see the module doc)?"""
    if not _BLOCK_START_RE.match(chunk) or _MUTATING_RE.search(chunk):
        return False
    return _reads("\n".join(later), _assigned_names(chunk))


def _state_names(words: list[str] | None, text: str) -> set[str] | None:
    """The variables a state command sets; None for state that is not a variable (cd, source, set, ...),
    which every later step needs."""
    if words is not None:
        rest = list(words)
        while rest and _ASSIGNMENT_WORD.fullmatch(rest[0]):
            rest.pop(0)
        if rest and rest[0] not in _DECLARERS and rest[0] not in ("read", "mapfile", "readarray"):
            return None
        if rest and (rest[0] == "export" or (rest[0] == "declare" and any("x" in w for w in rest[1:]
                                                                          if w.startswith("-")))):
            return None  # the environment of every later command
        if rest and rest[0] in _DECLARERS:
            return {re.split(r"[\[+=]", w)[0] for w in rest[1:] if not w.startswith(("-", "+"))}
    names = _assigned_names(text)
    if words is not None and words and words[0] == "read":
        names |= {w for w in words[1:] if re.fullmatch(r"[A-Za-z_]\w*", w)}
    return names or None


def _needed_context(context: list[tuple[str, set[str] | None]], step: str) -> list[str]:
    """The state commands `step` needs: every non-variable one, and the assignments of variables it
    reads, directly or through other needed state commands. Order kept."""
    needed_text, keep = step, []
    for text, names in reversed(context):
        if names is None or _reads(needed_text, names):
            keep.append(text)
            needed_text += "\n" + text
    return keep[::-1]


def _assemble(context: list[tuple[str, set[str] | None]], functions: dict[str, str], chunk: str) -> str:
    """The step: the state and function definitions `chunk` needs, then `chunk`. Functions are defined
    just before the first line that calls them (directly or through another function)."""
    used: list[str] = _functions_used(chunk, functions)
    needed = _needed_context(context, "\n".join(used + [chunk]))
    for _ in range(3):  # carried lines may call functions whose bodies read more state
        used = _functions_used("\n".join(needed + [chunk]), functions)
        needed = _needed_context(context, "\n".join(used + [chunk]))
    pending = {name: d for name, d in functions.items() if d in used}
    out: list[str] = []
    for line in needed + [chunk]:
        out.extend(_functions_used(line, pending))
        pending = {name: d for name, d in pending.items() if d not in out}
        out.append(line)
    return "\n".join(out)


def split_solution(script: str) -> SolutionScript:
    """Cut a solve.sh into the steps of an expert trajectory (see the module docstring)."""
    steps: list[str] = []
    context: list[tuple[str, set[str] | None]] = []  # state-setting commands in order, with what they set
    functions: dict[str, str] = {}  # name -> definition, prepended only to steps that call it
    stop_on_error = False
    chunks = _chunks(script)
    for index, chunk in enumerate(chunks):
        head = chunk.strip()
        words = _words(head)
        if words and words[0] == "set":
            errexit, carried = _set_options(words)
            stop_on_error = stop_on_error or errexit
            if carried:
                context.append((carried, None))
            continue
        if words and words[0] == "exit" and (len(words) == 1 or words[1] == "0"):
            break  # the script ends here
        if (words and _is_state(words)) or (words is None and _pure_block_state(head, chunks[index + 1:])):
            context.append((head, _state_names(words, head)))
            continue
        fn = _FUNCTION_RE.match(head)
        if fn:  # a header alone never ends a chunk (see _chunks), so the body is here too
            functions[fn.group(2) or fn.group(3)] = chunk
            continue
        steps.append(_assemble(context, functions, chunk))
        if words is None and not _BLOCK_START_RE.match(head) and not head.startswith("("):
            # `cd DIR && make` (also mid-chain): the script stays in DIR afterwards
            flat = head.replace("\\\n", " ")
            if "||" not in flat:
                context += [(m.group(1), None) for m in _CD_CHAIN_RE.finditer(flat)]
    return SolutionScript(steps, stop_on_error)
