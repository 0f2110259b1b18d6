"""Reading pytest output (our parser; see testlog.py for why not swebench's)."""

from __future__ import annotations

import pytest

from pivot_envs.domains.swe.testlog import (
    collection_errors,
    failure_sections,
    parse_pytest_log,
    section_name,
)

RA_LOG = """..F.                                                                     [100%]
=================================== FAILURES ===================================
_________________________________ test_last __________________________________
toolz/tests/test_itertoolz.py:173: in test_last
    assert last('ABCDE') == 'E'
E   IndexError: string index out of range
____________________________ TestX.test_y[a - b] _____________________________
E   assert 1 == 2
=========================== short test summary info ============================
PASSED toolz/tests/test_itertoolz.py::test_first
PASSED toolz/tests/test_itertoolz.py::test_param[a b]
SKIPPED [1] toolz/tests/test_functoolz.py:737: annotationlib is new in Python 3.14
FAILED toolz/tests/test_itertoolz.py::test_last - IndexError: string index out of range
FAILED toolz/tests/test_itertoolz.py::TestX::test_y[a - b] - assert 1 == 2
ERROR tests/test_broken.py - ImportError: cannot import name 'x'
2 failed, 2 passed, 1 skipped, 1 error in 0.31s
"""

VERBOSE_LOG = """toolz/tests/test_itertoolz.py::test_first PASSED                      [ 50%]
toolz/tests/test_itertoolz.py::test_last FAILED                       [100%]
"""


@pytest.mark.parametrize(("log", "expected"), [
    (RA_LOG, {"toolz/tests/test_itertoolz.py::test_first": "PASSED",
              "toolz/tests/test_itertoolz.py::test_param[a b]": "PASSED",
              "toolz/tests/test_itertoolz.py::test_last": "FAILED",
              "toolz/tests/test_itertoolz.py::TestX::test_y[a - b]": "FAILED",
              "tests/test_broken.py": "ERROR"}),
    (VERBOSE_LOG, {"toolz/tests/test_itertoolz.py::test_first": "PASSED",
                   "toolz/tests/test_itertoolz.py::test_last": "FAILED"}),
    ("1 passed in 0.01s\n", {}),
])
def test_parse(log, expected):
    assert parse_pytest_log(log) == expected


def test_collection_errors_and_failure_sections():
    outcomes = parse_pytest_log(RA_LOG)
    assert collection_errors(outcomes) == ["tests/test_broken.py"]
    sections = failure_sections(RA_LOG)
    assert "IndexError" in sections[section_name("toolz/tests/test_itertoolz.py::test_last")]
    assert section_name("a.py::TestX::test_y[a - b]") == "TestX.test_y[a - b]"
