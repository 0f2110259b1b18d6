"""Bug injection by AST mutation (SWE-smith style): find the places in a module where one small,
plausible mistake can be made, and make it.

Each `Mutation` changes one source span: the span of one expression (comparison, constant, return
value, call arguments, boolean or arithmetic operator) or the lines of one statement. Only that span
is rewritten (the expression by `ast.unparse`, the rest of the file byte for byte), so the bug patch
is a one- or few-line diff like a human's, and the fix is its exact reverse.

Kinds:
- flip_comparison: `<` <-> `>=`, `<=` <-> `>`, `==` <-> `!=`, `in` <-> `not in`, `is` <-> `is not`
- off_by_one: an integer constant in arithmetic, an index, a slice or a `range()` call, +1 or -1
- wrong_constant: `True` <-> `False`, or a short string literal loses its first character
- swap_arguments: the first two positional arguments of a call change places
- changed_return: `return <expr>` becomes `return None` (or `return not (<expr>)` for a test)
- flip_boolean: `and` <-> `or`
- wrong_operator: `+` <-> `-`, `*` <-> `//`... (arithmetic on non-strings)
- remove_statement: one statement of a function body is deleted (an assignment, call or augmented
  assignment that is not the function's only statement)
- remove_branch: an `if` block without `else` is deleted, or an `if`/`else` loses its `else`
"""

from __future__ import annotations

import ast
import dataclasses
import random
from collections.abc import Callable, Iterator

KINDS = ("flip_comparison", "off_by_one", "wrong_constant", "swap_arguments", "changed_return",
         "flip_boolean", "wrong_operator", "remove_statement", "remove_branch")

_FLIP_CMP: dict[type, type] = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.LtE: ast.Gt, ast.Gt: ast.LtE,
                               ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                               ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_FLIP_OP: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv,
                              ast.FloorDiv: ast.Mult, ast.Div: ast.Mult, ast.Mod: ast.FloorDiv}


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One bug: replace lines [start_line, end_line] (1-based, inclusive) of `path`'s source by
    `new_lines` (the mutated text of exactly those lines)."""

    path: str
    kind: str
    function: str         # qualified name of the enclosing function ("Class.method")
    start_line: int
    end_line: int
    old_text: str         # the original text of those lines
    new_text: str         # the mutated text of those lines
    description: str      # what was changed (for the report; never shown to the agent)

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        old = "".join(lines[self.start_line - 1:self.end_line])
        if old != self.old_text:
            raise ValueError(f"{self.path}:{self.start_line}: the source changed since the mutation was found")
        return "".join(lines[:self.start_line - 1]) + self.new_text + "".join(lines[self.end_line:])


def _line_span(lines: list[str], node: ast.expr | ast.stmt) -> tuple[int, int, str]:
    start, end = node.lineno, node.end_lineno or node.lineno
    return start, end, "".join(lines[start - 1:end])


def _replace_expr(lines: list[str], node: ast.expr, new_code: str) -> tuple[int, int, str, str]:
    """Replace exactly the characters of `node` by `new_code`; return (start, end, old, new) lines."""
    start, end, old = _line_span(lines, node)
    first = lines[start - 1]
    last = lines[end - 1]
    # col offsets are in UTF-8 bytes
    head = first.encode()[:node.col_offset].decode()
    tail = last.encode()[node.end_col_offset:].decode()
    return start, end, old, head + new_code + tail


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_testy(expr: ast.expr) -> bool:
    return isinstance(expr, (ast.Compare, ast.BoolOp)) or (isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not))


class _Finder:
    def __init__(self, path: str, source: str):
        self.path = path
        self.source = source
        self.lines = source.splitlines(keepends=True)
        self.tree = ast.parse(source)

    def functions(self) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
        def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
            for node in body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield prefix + node.name, node
                    yield from walk(node.body, prefix + node.name + ".")
                elif isinstance(node, ast.ClassDef):
                    yield from walk(node.body, prefix + node.name + ".")
        yield from walk(self.tree.body, "")

    def mutations(self) -> Iterator[Mutation | None]:
        for qualname, fn in self.functions():
            nested = {id(n) for child in ast.walk(fn) if child is not fn and isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)) for n in ast.walk(child)}
            for node in (n for stmt in fn.body for n in ast.walk(stmt) if id(n) not in nested):
                yield from self._expr_mutations(qualname, node)
            yield from self._stmt_mutations(qualname, fn)

    def _mk(self, kind: str, fn: str, span: tuple[int, int, str, str], what: str) -> Mutation | None:
        start, end, old, new = span
        if old == new:
            return None
        return Mutation(self.path, kind, fn, start, end, old, new, what)

    def _expr_mutations(self, fn: str, node: ast.AST) -> Iterator[Mutation | None]:
        seg = ast.get_source_segment
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP_CMP:
            flipped = ast.Compare(node.left, [_FLIP_CMP[type(node.ops[0])]()], node.comparators)
            yield self._mk("flip_comparison", fn, _replace_expr(self.lines, node, ast.unparse(flipped)),
                           f"{seg(self.source, node)} -> {ast.unparse(flipped)}")
        elif isinstance(node, ast.BoolOp):
            new_op: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            swapped = ast.BoolOp(new_op, node.values)
            yield self._mk("flip_boolean", fn, _replace_expr(self.lines, node, ast.unparse(swapped)),
                           f"{type(node.op).__name__} -> {type(new_op).__name__}")
        elif isinstance(node, ast.BinOp) and type(node.op) in _FLIP_OP and not self._stringy(node):
            new_bin = ast.BinOp(node.left, _FLIP_OP[type(node.op)](), node.right)
            yield self._mk("wrong_operator", fn, _replace_expr(self.lines, node, ast.unparse(new_bin)),
                           f"{type(node.op).__name__} -> {type(new_bin.op).__name__}")
        if isinstance(node, (ast.BinOp, ast.Subscript, ast.Slice, ast.Compare)) or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"):
            children = ([node.slice] if isinstance(node, ast.Subscript) else
                        [c for c in (node.lower, node.upper, node.step) if c] if isinstance(node, ast.Slice) else
                        [node.left, node.right] if isinstance(node, ast.BinOp) else
                        [node.left, *node.comparators] if isinstance(node, ast.Compare) else node.args)
            for c in children:
                if isinstance(c, ast.Constant) and type(c.value) is int:
                    delta = 1 if c.value <= 1 else -1
                    yield self._mk("off_by_one", fn, _replace_expr(self.lines, c, repr(c.value + delta)),
                                   f"{c.value} -> {c.value + delta}")
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield self._mk("wrong_constant", fn, _replace_expr(self.lines, node, repr(not node.value)),
                           f"{node.value} -> {not node.value}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and 2 <= len(node.value) <= 20
              and node.lineno == node.end_lineno and "\n" not in node.value):
            yield self._mk("wrong_constant", fn, _replace_expr(self.lines, node, repr(node.value[1:])),
                           f"{node.value!r} -> {node.value[1:]!r}")
        if (isinstance(node, ast.Call) and len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2])
                and ast.dump(node.args[0]) != ast.dump(node.args[1])):
            a, b = node.args[0], node.args[1]
            if a.lineno == a.end_lineno == b.lineno == b.end_lineno:
                line = self.lines[a.lineno - 1].encode()
                sa, sb = line[a.col_offset:a.end_col_offset], line[b.col_offset:b.end_col_offset]
                new_line = (line[:a.col_offset] + sb + line[a.end_col_offset:b.col_offset] + sa
                            + line[b.end_col_offset:]).decode()
                yield self._mk("swap_arguments", fn, (a.lineno, a.lineno, self.lines[a.lineno - 1], new_line),
                               f"swap {sa.decode()}, {sb.decode()}")
        if isinstance(node, ast.Return) and node.value is not None:
            v = node.value
            if _is_testy(v):
                new_code = f"not ({ast.unparse(v)})"
                yield self._mk("changed_return", fn, _replace_expr(self.lines, v, new_code), "negated return")
            elif not (isinstance(v, ast.Constant) and v.value is None):
                yield self._mk("changed_return", fn, _replace_expr(self.lines, v, "None"), "return None")

    @staticmethod
    def _stringy(node: ast.BinOp) -> bool:
        return any(isinstance(x, (ast.Constant, ast.JoinedStr)) and isinstance(getattr(x, "value", ""), str)
                   for x in (node.left, node.right)) or isinstance(node.left, ast.JoinedStr)

    def _stmt_mutations(self, fn: str, func: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[Mutation | None]:
        def blocks(node: ast.AST) -> Iterator[list[ast.stmt]]:
            for field in ("body", "orelse", "finalbody"):
                block = getattr(node, field, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                    yield block
            for h in getattr(node, "handlers", []) or []:
                yield h.body

        todo: list[ast.AST] = [func]
        while todo:
            node = todo.pop()
            for block in blocks(node):
                real = [s for s in block if not _is_docstring(s)]
                for stmt in block:
                    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        continue
                    todo.append(stmt)
                    if len(real) < 2 or _is_docstring(stmt):
                        continue
                    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr)) and not isinstance(stmt, ast.Return):
                        start, end, old = _line_span(self.lines, stmt)
                        if self._owns_lines(stmt, block):
                            yield self._mk("remove_statement", fn, (start, end, old, ""),
                                           f"removed `{ast.unparse(stmt)[:60]}`")
                    if isinstance(stmt, ast.If) and not stmt.orelse and self._owns_lines(stmt, block):
                        start, end, old = _line_span(self.lines, stmt)
                        yield self._mk("remove_branch", fn, (start, end, old, ""),
                                       f"removed `if {ast.unparse(stmt.test)[:60]}:` block")
                if isinstance(node, ast.If) and block is node.orelse and not (
                        len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)):
                    # drop the `else:` line and its block
                    else_line = self._else_line(node)
                    if else_line is not None:
                        end = node.orelse[-1].end_lineno or node.orelse[-1].lineno
                        old = "".join(self.lines[else_line - 1:end])
                        if self._plain_lines(else_line, end):
                            yield self._mk("remove_branch", fn, (else_line, end, old, ""), "removed `else:` block")

    def _else_line(self, node: ast.If) -> int | None:
        first = node.orelse[0].lineno
        for ln in range(first - 1, node.body[-1].end_lineno or node.lineno, -1):
            if self.lines[ln - 1].strip().startswith("else:") and self.lines[ln - 1].strip() == "else:":
                return ln
        return None

    def _owns_lines(self, stmt: ast.stmt, block: list[ast.stmt]) -> bool:
        """Deleting the statement's lines deletes nothing else (no `a = 1; b = 2` on one line)."""
        start, end = stmt.lineno, stmt.end_lineno or stmt.lineno
        for other in block:
            if other is stmt:
                continue
            o_start, o_end = other.lineno, other.end_lineno or other.lineno
            if o_start <= end and o_end >= start:
                return False
        return self._plain_lines(start, end) and stmt.col_offset == len(self.lines[start - 1]) - len(
            self.lines[start - 1].lstrip())

    def _plain_lines(self, start: int, end: int) -> bool:
        text = "".join(self.lines[start - 1:end])
        return "\\\n" not in text


def find_mutations(path: str, source: str) -> list[Mutation]:
    """Every candidate mutation of `source` (module at `path`, relative to the repository), unchecked:
    `is_valid` says whether one still parses and changes the AST (cheap enough per sample, too slow
    for all of a large module's thousands)."""
    finder = _Finder(path, source)
    out: list[Mutation] = []
    seen: set[tuple[int, int, str]] = set()
    for m in finder.mutations():
        if m is None or (m.start_line, m.end_line, m.new_text) in seen:
            continue
        seen.add((m.start_line, m.end_line, m.new_text))
        out.append(m)
    return out


def is_valid(m: Mutation, source: str) -> bool:
    """The mutated source parses and its AST differs from the original (a span edit that went wrong,
    or one that changed nothing, is dropped)."""
    try:
        tree = ast.parse(m.apply(source))
    except (SyntaxError, ValueError):
        return False
    return ast.dump(tree) != ast.dump(ast.parse(source))


def sample_balanced(mutations: list[Mutation], n: int, rng: random.Random,
                    valid: Callable[[Mutation], bool] = lambda m: True, per_function: int = 2) -> list[Mutation]:
    """Up to `n` valid mutations drawn round-robin over kinds (so rare kinds are not crowded out), at
    most `per_function` per function (a small library needs more than two)."""
    by_kind: dict[str, list[Mutation]] = {k: [] for k in KINDS}
    for m in mutations:
        by_kind[m.kind].append(m)
    for pool in by_kind.values():
        rng.shuffle(pool)
    used: dict[tuple[str, str], int] = {}
    out: list[Mutation] = []
    while len(out) < n and any(by_kind.values()):
        for kind in KINDS:
            pool = by_kind[kind]
            while pool:
                m = pool.pop()
                key = (m.path, m.function)
                if used.get(key, 0) < per_function and valid(m):
                    used[key] = used.get(key, 0) + 1
                    out.append(m)
                    break
            if len(out) >= n:
                break
    return out
