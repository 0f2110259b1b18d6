"""Reading pytest output: which tests passed, failed or errored.

Our own parser, not `swebench`'s: `swebench` 5.0.2 installs `--no-deps` cleanly, but its log parsers
live in `swebench.harness`, whose package `__init__` imports the Modal cloud client, `datasets` and
`python-dotenv` at import time, so the parser cannot be imported without that tree. This one reads
the same lines its `parse_log_pytest` reads (the `-rA` short summary, `STATUS nodeid [- message]`)
and also pytest's verbose lines (`nodeid STATUS [ 50%]`), so that a test run the model typed with
other flags is understood too.
"""

from __future__ import annotations

import re

STATUSES = ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS")
PASSING = frozenset({"PASSED", "XFAIL"})

_SUMMARY = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+)$")
_VERBOSE = re.compile(r"^(\S+::\S.*?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?: +\[ *\d+%\])?$")
_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$")
_TIMING = re.compile(r"\bin \d+(\.\d+)?s\b( \(\d+:\d+:\d+\))?")


def parse_pytest_log(log: str) -> dict[str, str]:
    """{test node id: status}. Collection errors appear as `ERROR <file>` (no `::`)."""
    out: dict[str, str] = {}
    for raw in log.splitlines():
        line = raw.rstrip()
        m = _SUMMARY.match(line)
        if m:
            status, rest = m.groups()
            if status == "SKIPPED" and rest.startswith("["):  # `SKIPPED [2] file:line: reason`
                continue
            if status in ("FAILED", "ERROR") and " - " in rest:
                rest = _node_id_before_message(rest)
            out[rest.strip()] = status
            continue
        m = _VERBOSE.match(line)
        if m:
            out.setdefault(m.group(1).strip(), m.group(2))
    return out


def _node_id_before_message(rest: str) -> str:
    """`nodeid - message` -> nodeid; a parametrised id may itself contain " - " inside its brackets,
    so the split is the first " - " outside brackets."""
    depth = 0
    for i, ch in enumerate(rest):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0 and rest.startswith(" - ", i):
            return rest[:i]
    return rest


def collection_errors(outcomes: dict[str, str]) -> list[str]:
    """Test files that failed to import (whole modules missing from the run)."""
    return sorted(t for t, s in outcomes.items() if s == "ERROR" and "::" not in t)


def passing(outcomes: dict[str, str]) -> set[str]:
    return {t for t, s in outcomes.items() if s in PASSING}


def failure_sections(log: str) -> dict[str, str]:
    """The `--tb=short` failure report of each failed test, keyed by the header pytest prints
    (`test_name` or `Class.test_name`, parametrised ids included)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in log.splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(m.group(1), [])
            continue
        if current is not None:
            if line.startswith("=") and line.endswith("="):
                current = None
                continue
            current.append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


def section_name(node_id: str) -> str:
    """The failure-section header pytest uses for `node_id` (file::Class::test -> Class.test)."""
    parts = node_id.split("::")[1:]
    return ".".join(parts)


def strip_timing(text: str) -> str:
    """pytest summary lines without their run time (`5 passed in 0.31s` -> `5 passed`)."""
    return _TIMING.sub("", text)
