"""benchmarks/smollm_rates.py's selection rule and report, on stage files written by hand: the rate with the
highest dev plateau (mean of the last quarter of steps) is chosen, ties go to the lower rate, a missing
cell chooses nothing, and the chosen pair is compared on dev (paired by state, bootstrap by trajectory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import smollm_rates as rates
from benchmarks.smollm_row import Stages
from pivot_algo.config import load_run_config


def _cell(stages: Stages, algo: str, lr: float, devs: list[float], last: dict[str, list[float]]) -> None:
    curve = [{"step": 2 * i, rates.DEV_KEY: d, "costs/rollout_turns": 100.0 * i, "costs/wall_seconds": 10.0 * i}
             for i, d in enumerate(devs)]
    cell = {"algo": algo, "lr": lr, "curve": curve, "costs": {"optimizer_steps": 8, "wall_seconds": 40.0},
            "steps": 8, "per_state": [{}] * (len(devs) - 1) + [last], "eval_seconds": 1.0}
    (stages.dir / f"rates_{algo}_{lr:g}.json").write_text(json.dumps(cell))


def test_rule_picks_the_highest_plateau_ties_to_the_lower_rate(tmp_path: Path):
    cfg = load_run_config("smollm_row")
    sizes = rates.GridSizes(bootstrap_reps=200)
    assert rates.grid(cfg, sizes) == {"sft": [3e-5, 1e-4, 3e-4], "pivotrl": [1e-5, 3e-5, 1e-4]}
    edge = rates.GridSizes(extra_rates={"pivotrl": [3e-6]})  # the edge check below a chosen lowest rate
    assert rates.grid(cfg, edge)["pivotrl"] == [3e-6, 1e-5, 3e-5, 1e-4]
    stages = Stages(tmp_path)
    (stages.dir / "profile.json").write_text(json.dumps({"costs": {"rollout_turns": 248, "wall_seconds": 120.0}}))
    good = {f"t{t}#{k}": [1.0, 1.0] for t in range(3) for k in range(4)}
    bad = {key: [0.0, 0.5] for key in good}
    # SFT: 1e-4 peaks early but its plateau (steps 6, 8) is below 3e-4's
    _cell(stages, "sft", 3e-5, [0.1, 0.1, 0.2, 0.2, 0.2], bad)
    _cell(stages, "sft", 1e-4, [0.1, 0.9, 0.5, 0.3, 0.3], bad)
    _cell(stages, "sft", 3e-4, [0.1, 0.3, 0.4, 0.5, 0.6], bad)
    _cell(stages, "pivotrl", 1e-5, [0.1, 0.2, 0.3, 0.7, 0.7], good)
    _cell(stages, "pivotrl", 3e-5, [0.1, 0.3, 0.5, 0.6, 0.8], good)
    s = rates.summarise(cfg, sizes, stages)
    assert s["chosen"] == {"sft": "sft@0.0003"}  # one PivotRL cell missing: nothing chosen for it yet
    _cell(stages, "pivotrl", 1e-4, [0.1, 0.1, 0.1, 0.1, 0.1], good)
    s = rates.summarise(cfg, sizes, stages)
    assert s["cells"]["sft@0.0003"]["plateau"] == pytest.approx(0.55)
    assert s["chosen"] == {"sft": "sft@0.0003", "pivotrl": "pivotrl@1e-05"}  # 0.7 = 0.7: the lower rate
    m = s["matched"]
    assert m["target"] == pytest.approx(0.6)  # the highest dev reward both chosen curves reach
    assert m["wall_s"] == {"sft": 40.0, "pivotrl": 120.0 + 30.0}  # PivotRL pays for its profiling
    d = m["pivotrl_minus_sft_last"]
    assert d["diff"] == pytest.approx(0.75) and d["states"] == 12 and d["lo"] <= d["diff"] <= d["hi"]
    report = rates.format_report(s)
    assert "**chosen**" in report and "not the row's rates" in report
