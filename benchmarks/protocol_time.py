"""How long the paper-table protocol takes on this machine, from the stage times of a finished grid.

    python benchmarks/protocol_time.py benchmarks/results/paper_table/dev-v9 --seeds 10 --processes 2

Reads every stored cell of the grid folder (its `cells/<key>/*.json`, each with the wall seconds its
stage took), prints the time per stage (the seed's base pre-training, then each method's cell:
profiling + training with its validation curve + the held-out evaluation), and estimates the protocol:
`--seeds` seeds x every method at one rate each, run as `--processes` shards (one per core), plus the
horizon sweep of "The paper's claims, decided" (PivotRL and E2E-RL at H operations per task, 3 seeds
per H; the bases are shared, episode-bound stages scaled by H / 2.5, the mean horizon measured here).
An estimate from measured means, not a measurement: it says what to expect, the protocol's own log
says what it took.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from pivot_algo.experiments.presets import METHODS, RATE_OF

MEAN_HORIZON = 2.5  # operations per in-domain task of the standard world (2 or 3)
BORROW = RATE_OF
"""A method the grid did not run is charged the mean time of the method whose rate it borrows (said in
the output)."""


def stage_times(grid: Path) -> dict[str, list[float]]:
    """method -> wall seconds of its cells (the base's without pre-training); "pretrain" -> per seed."""
    times: dict[str, list[float]] = defaultdict(list)
    for path in sorted(grid.glob("cells/*/*.json")):
        record = json.loads(path.read_text())
        value, wall = record["value"], record.get("wall_s")
        if wall is None:
            continue
        pre = value.get("pretrain_seconds") or 0.0
        if pre:
            # The base's cell is pre-training + its evaluation. `pretrain_seconds` counts training steps
            # only, not stage 2's selection checks (~40% of a base's build on the test phase), so a cell
            # that built its base is charged its whole wall time less the evaluation; one whose base (or
            # stage-1 model) came from the cache has a small wall, and then the training seconds stand.
            evaluation = value.get("eval_seconds", 0.0)
            times["pretrain"].append(max(pre, wall - evaluation))
            times[value["method"]].append(evaluation or max(0.0, wall - pre))
        else:
            times[value["method"]].append(wall)
    return dict(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("grid", type=Path, help="a grid's results folder, e.g. benchmarks/results/paper_table/dev-v9")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--horizons", default="2,4,8,16")
    ap.add_argument("--horizon-seeds", type=int, default=3)
    args = ap.parse_args(argv)
    times = stage_times(args.grid)
    if not times:
        print(f"no timed cells under {args.grid}/cells", file=sys.stderr)
        return 1
    print("| stage | cells | mean s | min s | max s |\n|---|---|---|---|---|")
    for stage, values in sorted(times.items()):
        print(f"| {stage} | {len(values)} | {statistics.mean(values):.0f} | {min(values):.0f} | {max(values):.0f} |")
    mean = {k: statistics.mean(v) for k, v in times.items()}
    per_seed = mean.get("pretrain", 0.0)
    for method in METHODS:
        if method not in mean and BORROW.get(method) in mean:
            print(f"({method}: not in this grid, charged {BORROW[method]}'s mean)")
        per_seed += mean.get(method, mean.get(BORROW.get(method, ""), 0.0))
    grid_s = args.seeds * per_seed / args.processes
    sweep_s = 0.0
    for h in (int(x) for x in args.horizons.split(",")):
        scale = h / MEAN_HORIZON
        sweep_s += args.horizon_seeds * scale * (mean.get("pivotrl", 0) + mean.get("e2e_grpo", 0) + mean.get("base", 0))
    sweep_s /= args.processes
    print(f"\nper seed, every method once: {per_seed:.0f} s ({per_seed / 60:.1f} min)")
    print(f"protocol: {args.seeds} seeds on {args.processes} processes ~ {grid_s / 60:.0f} min; horizon sweep "
          f"({args.horizons}, {args.horizon_seeds} seeds each) ~ {sweep_s / 60:.0f} min; total ~ "
          f"{(grid_s + sweep_s) / 3600:.1f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
