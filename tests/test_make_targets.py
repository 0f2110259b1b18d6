"""The README's commands stay true: the presets that `make demo` and `make demo-smollm` name exist and
parse (the runs themselves are measured in the README; the table's tooling is tested end to end by
tests/algo/test_paper_table.py with its ci preset)."""

from __future__ import annotations

import re
from pathlib import Path

from pivot_algo.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name} \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile sets no default for {name}"
    return match.group(1)


def test_make_demo_runs_a_held_out_paper_table_preset():
    from pivot_algo.experiments import presets

    preset = presets.PRESETS[_make_variable("TABLE_PRESET")]
    assert preset.phase == "test", "the main job reports held-out tasks, never the dev split the world was tuned on"
    assert "pivot_algo.cli table --preset $(TABLE_PRESET) --out $(TABLE_OUT)" in (ROOT / "Makefile").read_text()
    # The main job must not rewrite tracked files: its results and log go to the git-ignored runs/.
    assert _make_variable("TABLE_OUT").startswith("runs/")
    assert "runs/" in (ROOT / ".gitignore").read_text().splitlines()
    # Its rates are the ones chosen on dev (the full protocol uses the same): a demo never tunes on test.
    assert preset.lrs == presets.PRESETS["full"].lrs and preset.key() == presets.PRESETS["full"].key()


def test_the_venv_is_installed_against_the_pinned_constraints():
    makefile = (ROOT / "Makefile").read_text()
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    for package in ("torch", "transformers", "tokenizers", "numpy"):
        assert package in pins, f"constraints.txt pins no {package}"
    assert makefile.count("-c constraints.txt") >= 3  # torch, the project, the --no-deps data packages


def test_make_demo_smollm_preset_parses_as_a_typed_run_config():
    tree = load_config(ROOT / _make_variable("PRESET"))
    assert RunConfig.from_dict(tree).model == "smollm2-135m"
