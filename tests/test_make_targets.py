"""The README's commands stay true: the presets that `make demo` and `make demo-smollm` name exist and
parse (the runs themselves are measured in the README; the table's tooling is tested end to end by
tests/algo/test_paper_table.py with its ci preset)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from pivot_algo.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile sets no default for {name}"
    return match.group(1)


def test_make_demo_runs_a_held_out_paper_table_preset():
    spec = importlib.util.spec_from_file_location("paper_table_for_make", ROOT / "benchmarks" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    preset = module.PRESETS[_make_variable("TABLE_PRESET")]
    assert preset.phase == "test", "the main job reports held-out tasks, never the dev split the world was tuned on"
    assert "pivot_algo.cli table --preset $(TABLE_PRESET)" in (ROOT / "Makefile").read_text()


def test_make_demo_smollm_preset_parses_as_a_typed_run_config():
    tree = load_config(ROOT / _make_variable("PRESET"))
    assert RunConfig.from_dict(tree).model == "smollm2-135m"
