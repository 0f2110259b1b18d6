""".ci/lint.py: a mypy run that could not check the code is a failure, not a count of findings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_lint():
    spec = importlib.util.spec_from_file_location("ci_lint_under_test", ROOT / ".ci" / "lint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lint = _load_lint()

# What mypy 2.4 printed (exit status 2) when benchmarks/ imported `_common` both as `_common` and as
# `benchmarks._common`; the old gate read its last line as "1 finding".
CRASH = """\
benchmarks/_common.py: error: Source file found twice under different module names: "_common" and "benchmarks._common"
benchmarks/_common.py: note: See https://mypy.readthedocs.io/en/stable/running_mypy.html#mapping-file-paths-to-modules for more info
benchmarks/_common.py: note: Common resolutions include:
benchmarks/_common.py: note:     a) adding `__init__.py` somewhere,
benchmarks/_common.py: note:     b) using `--explicit-package-bases` or adjusting `MYPYPATH`
Found 1 error in 1 file (errors prevented further checking)
"""

FINDINGS = """\
pivot_algo/a.py:3: error: Need type annotation for "out"  [var-annotated]
pivot_algo/b.py:7: error: Item "None" of "list[float] | None" has no attribute "append"  [union-attr]
pivot_algo/b.py:9: error: Incompatible types in assignment  [assignment]
Found 3 errors in 2 files (checked 133 source files)
"""


@pytest.mark.parametrize("returncode", [2, 1])
def test_crash_is_a_failure_whatever_the_exit_status(returncode):
    with pytest.raises(lint.MypyDidNotCheck, match="prevented further checking"):
        lint.mypy_findings(returncode, CRASH)


def test_findings_are_counted():
    assert lint.mypy_findings(1, FINDINGS) == 3
    assert lint.mypy_findings(1, "Found 3 errors in 2 files\n") == 3
    assert lint.mypy_findings(1, "x.py:1: error: e  [misc]\nFound 1 error in 1 file (checked 1 source file)\n") == 1


def test_success_is_zero():
    assert lint.mypy_findings(0, "Success: no issues found in 133 source files\n") == 0


@pytest.mark.parametrize("returncode, stdout, stderr", [
    (2, "", "mypy: error: unrecognized arguments: --bogus\n"),  # usage error
    (0, "", ""),  # no output at all
    (1, "x.py:1: error: e  [misc]\n", ""),  # no summary line
    (2, "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n", "INTERNAL ERROR\n"),  # mypy crashed
    (0, FINDINGS, ""),  # summary and exit status disagree
    (1, "Success: no issues found in 133 source files\n", ""),
])
def test_no_complete_check_is_a_failure(returncode, stdout, stderr):
    with pytest.raises(lint.MypyDidNotCheck):
        lint.mypy_findings(returncode, stdout, stderr)


def test_count_mypy_turns_a_crash_into_a_failing_exit(monkeypatch):
    class Done:
        returncode, stdout, stderr = 2, CRASH, ""

    monkeypatch.setattr(lint.subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(SystemExit) as e:
        lint.count_mypy()
    assert e.value.code not in (0, None)
