"""The paper's Table 1 in miniature, with learning curves: every method x seed on the miniature world
(pivot_algo/miniworld.py), trained until its in-domain validation curve plateaus, evaluated on held-out
tasks, compared by paired intervals, and judged claim by claim (pivot_algo/experiments/verdicts.py).

    pivotrl table --preset ci        # the tooling check (CI), a few minutes
    pivotrl table --preset demo      # `make demo`: one test seed, curves included (12 min from a fresh clone here, venv included)
    pivotrl table --preset dev --lr-grid 1e-4,3e-4,1e-3,3e-3   # choose each method's learning rate on dev
    pivotrl table --preset full --shard 0/2 & pivotrl table --preset full --shard 1/2   # the protocol
    pivotrl table --preset dev --world-check                   # the world's acceptance check (dev only)
    pivotrl table --preset full --horizon 8 --methods base,pivotrl,e2e_grpo   # one point of the horizon sweep
    pivotrl table --preset full --horizon-summary               # the sweep's table and plot (horizon.py)

Per seed: a tiny model (`GridPreset.model`, pivot_algo/policy/tiny.py) is pre-trained in two stages
and cached: SFT on a broad mix (group-A families, tool use, report-only conversations, one-call tool
tasks; no group B), then a little of group B at a low rate until its in-domain success on tasks of their
own seed range reaches `GridPreset.base_target` (25%) with every in-domain operation sometimes right. Every method then starts from that base on the
same in-domain (group B) training trajectories:

    base, sft, pivotrl, pivotrl_paper (verifier="paper"), pivotrl_exact_match, pivotrl_random_turns,
    pivotrl_null_reward (the control: rewards shuffled within each group), e2e_grpo

Each trained method runs at its own learning rate (chosen on dev, `GridPreset.lrs`) with a linear
warm-up, is evaluated every `eval_every` steps on validation suites (their own task seeds: in-domain,
group A, tool use) and stops at a plateau (pivot_algo/experiments/curves.py) or at `max_steps`; the
model it stops with is evaluated by greedy whole episodes on the held-out suites. A (seed, method,
rate) cell is one stage of a `StageCache` (pivot_algo/experiments/stages.py): a killed run started
again skips finished cells, and `--shard i/n` splits the seeds across processes (one per core).

Outputs in benchmarks/results/paper_table/<preset>/ (relative to the working directory, `--out`):
table.md, results.json (every cell: per-task outcomes, the curve, per-step metrics, costs, library
versions), curves.png (in-domain validation accuracy against model calls and wall time, seeds as
bands), pareto.png (in-domain gain against OOD retention over rates x checkpoints), in_vs_out.png.
Every run is appended to benchmarks/results/paper_table/log.jsonl.

The experiments layer, one job per module (read in this order):
    presets.py      the compared methods, GridPreset (every knob, named and documented), the presets, the task sets
    bases.py        the seed's base: two-stage pre-training, cached
    cells.py        one (seed, method, rate): profile, train to a plateau, evaluate (evaluation.py: episodes, curves)
    report.py       statistics, matched-accuracy comparisons, the markdown table, plots, the rate choice
    horizon.py      claim 3 against the horizon, read from the finished --horizon runs
    verdicts.py     the claims, each judged by a rule written before the runs
    stats.py, stages.py, curves.py   intervals, the resumable stage cache, plateaus and probes
    table.py        this file: the grid (cells to run, shards, resume), the world's acceptance check, the CLI

Costs per method: rollout turns = model calls generated (PivotRL's include its profiling), sandbox
executions (every action an env evaluated, verification and replay included), generated tokens, wall
seconds (profiling + training; evaluation excluded), optimiser steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pivot_algo import miniworld
from pivot_algo.experiments import horizon
from pivot_algo.experiments.cells import profile_cell, run_cell
from pivot_algo.experiments.presets import (
    METHODS,
    PRESETS,
    RATE_OF,
    RESULTS,
    SUITES,
    GridPreset,
    world,
)
from pivot_algo.experiments.report import markdown, plots, summarise, write_rate_grid
from pivot_algo.experiments.stages import StageCache, library_versions
from pivot_algo.experiments.verdicts import premise_checks, premise_failures

# ----------------------------------------------------------------------------- the grid

def _git_commit() -> str:
    """The commit the code ran from: git's answer in a checkout; in a `git archive` snapshot (how long
    runs are started in the background) the COMMIT file beside this module, which git archive fills in."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True,
                             timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    if out:
        return out
    stamp = (Path(__file__).parent / "COMMIT").read_text().strip() if (Path(__file__).parent / "COMMIT").exists() else ""
    return stamp[:7] if stamp and not stamp.startswith("$") else "unknown"


def _log(out_root: Path, entry: dict[str, Any]) -> None:
    out_root.mkdir(parents=True, exist_ok=True)
    with (out_root / "log.jsonl").open("a", encoding="utf-8") as fh:  # every configuration ever run
        fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _git_commit(),
                             "world": miniworld.WORLD_VERSION, **entry}) + "\n")


def cell_name(seed: int, method: str, lr: float | None) -> str:
    return f"seed{seed}__{method}" + ("" if lr is None else f"__lr{lr:g}")


def planned_cells(preset: GridPreset, lr_grid: tuple[float, ...] = ()) -> list[tuple[int, str, float | None]]:
    """(seed, method, rate) of every cell: each method at its preset rate, and with an `lr_grid` the
    methods that own a rate (SFT, PivotRL, E2E-RL) at every rate of the grid as well."""
    out: list[tuple[int, str, float | None]] = []
    for seed in preset.seeds:
        for method in preset.methods:
            if method == "base":
                out.append((seed, method, None))
                continue
            rates = [preset.lr(method)] + ([r for r in lr_grid if method in preset.lrs] if lr_grid else [])
            out.extend((seed, method, r) for r in dict.fromkeys(rates))
    return out


def cell_spec(preset: GridPreset, seed: int, method: str, lr: float | None) -> dict[str, Any]:
    """What a cell's stored value was computed for (its StageCache spec)."""
    return {"preset": preset.key(), "seed": seed, "method": method, "lr": lr}


def stored_cells(cache: StageCache, preset: GridPreset, plan: list[tuple[int, str, float | None]]
                 ) -> dict[tuple[int, str, float | None], dict[str, Any] | None]:
    """The stored value of every planned (seed, method, rate) cell; None for those not run yet."""
    return {(s, m, r): cache.get(cell_name(s, m, r), cell_spec(preset, s, m, r)) for s, m, r in plan}


def _grid_dirs(preset_name: str, preset: GridPreset, out_root: Path, work_root: Path | None, threads: int
               ) -> tuple[Path, Path]:
    """(results folder, work folder) of a grid. Results made with another thread count or horizon are kept
    apart (each is its own table)."""
    out = out_root / (preset_name + ("" if preset.horizon is None else f"-h{preset.horizon}")
                      + ("" if threads == 1 else f"-threads{threads}"))
    return out, (work_root or Path("runs") / "paper_table") / preset_name / preset.key()


def skip_excluded_refusal(preset: GridPreset) -> str | None:
    """Why `skip_excluded` cannot be used with `preset` (None when it can): it leaves out seeds by the
    test phase's premises, judged on each seed's base."""
    if preset.phase == "test" and "base" in preset.methods:
        return None
    return ("--skip-excluded leaves out seeds whose base fails the test-phase premises: it needs a test-phase "
            f"preset and the base among the methods (got phase {preset.phase!r}, methods {list(preset.methods)})")


def run_grid(preset_name: str, out_root: Path = RESULTS, preset: GridPreset | None = None,
             work_root: Path | None = None, shard: tuple[int, int] = (0, 1), lr_grid: tuple[float, ...] = (),
             threads: int = 1, skip_excluded: bool = False) -> dict[str, Any] | None:
    """Run (or finish) the cells of `preset_name` that belong to `shard` (i, n: seeds whose position % n
    == i), then, when every cell of the grid is stored, summarise. Small results go to
    `out_root/<preset>/` (committable); checkpoints and profiles to `work_root/<preset>/` (git-ignored).
    With `skip_excluded` (test phase), a seed's base runs first and, when it fails the premises
    (`verdicts.BASE_PREMISES`), its other cells are not run: the summary leaves such a seed out anyway, and
    its base is judged before any method trains from it, so skipping cannot favour a method.
    Returns the result, or None when other shards still have cells to run."""
    import torch

    torch.set_num_threads(threads)  # one per process: on a shared 2-core machine, run two shards instead
    preset = preset or PRESETS[preset_name]
    if skip_excluded and (refusal := skip_excluded_refusal(preset)):
        raise ValueError(refusal)
    out, work = _grid_dirs(preset_name, preset, out_root, work_root, threads)
    cache = StageCache(out / "cells" / preset.key())
    t0 = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    _log(out_root, {"event": "start", "preset": preset_name, "key": preset.key(), "shard": list(shard), "threads": threads,
                    "lr_grid": list(lr_grid), "load": load_start, "config": dataclasses.asdict(preset)})
    tasks = world(preset)
    plan = planned_cells(preset, lr_grid)
    mine = [c for c in plan if preset.seeds.index(c[0]) % shard[1] == shard[0]]
    if skip_excluded:  # each seed's base before its methods
        mine.sort(key=lambda c: (preset.seeds.index(c[0]), c[1] != "base"))
    excluded: dict[int, list[str]] = {}
    for seed, method, lr in mine:
        if seed in excluded:
            continue
        spec = cell_spec(preset, seed, method, lr)
        cell_preset = preset if lr is None else dataclasses.replace(preset, lrs={**preset.lrs, RATE_OF.get(method, method): lr})
        t_cell = time.perf_counter()
        def compute(p: GridPreset = cell_preset, s: int = seed, m: str = method) -> dict[str, Any]:
            return run_cell(p, s, m, tasks, work)

        cell = cache.run(cell_name(seed, method, lr), spec, compute)
        if cell_name(seed, method, lr) in cache.ran:
            ev = cell["eval"]
            print(f"[{time.perf_counter() - t0:6.0f} s] seed {seed} {method:22s} lr {lr or 0:<7g} in-domain "
                  f"{ev['in_domain']['success']:.3f}  ood-A {ev['ood_group_a']['success']:.3f}  tool "
                  f"{ev['ood_tool']['success']:.3f}  steps {cell.get('steps', 0)}  calls {cell['costs']['rollout_turns']:.0f}"
                  f"  ({time.perf_counter() - t_cell:.0f} s)", flush=True)
        if skip_excluded and method == "base" and (why := premise_failures(cell["eval"])):
            excluded[seed] = why
            print(f"seed {seed}: base fails the premises ({'; '.join(why)}): its other cells are skipped", flush=True)
    stored = stored_cells(cache, preset, plan)
    if skip_excluded:  # every shard's excluded seeds, read back from their stored bases
        excluded = {s: why for s in preset.seeds if (b := stored[(s, "base", None)]) is not None
                    and (why := premise_failures(b["eval"]))}
        if len(excluded) == len(preset.seeds):
            print(f"every seed's base fails the premises ({excluded}): nothing to summarise", flush=True)
            return None
    missing = [k for k, v in stored.items() if v is None and k[0] not in excluded]
    if missing:
        print(f"shard {shard[0]}/{shard[1]} done; {len(missing)} cells of other shards still to run", flush=True)
        return None
    cells = {(s, m): v for s in preset.seeds for m in preset.methods
             if (v := stored[(s, m, None if m == "base" else preset.lr(m))]) is not None}
    meta = {"preset": preset_name, "key": preset.key(), "commit": _git_commit(), "wall_seconds": time.perf_counter() - t0,
            "cells_run": len(cache.ran), "cells_resumed": len(plan) - len(cache.ran), "load_start": load_start,
            "load_end": [round(x, 2) for x in os.getloadavg()], "versions": library_versions(), "threads": threads,
            "command": " ".join(sys.argv)}
    result = write_results(preset, cells, meta, out)
    if lr_grid:
        result["rates"] = write_rate_grid(preset, {k: v for k, v in stored.items() if v is not None}, lr_grid, out)
        (out / "results.json").write_text(json.dumps(result, indent=1))
    _log(out_root, {"event": "done", "preset": preset_name, "key": preset.key(), "meta": meta,
                    "in_domain": {m: result["summary"]["methods"][m]["in_domain"]["mean"] for m in preset.methods},
                    "claims": [[c["claim"], c["verdict"]] for c in result["summary"]["claims"]]})
    return result


def write_results(preset: GridPreset, cells: dict[tuple[int, str], dict], meta: dict[str, Any], out: Path) -> dict[str, Any]:
    summary = summarise(preset, cells)
    table = markdown(preset, summary, meta)
    (out / "table.md").write_text(table)
    result = {"meta": meta, "config": dataclasses.asdict(preset), "summary": summary,
              "cells": [cells[(s, m)] for s in preset.seeds for m in preset.methods if (s, m) in cells],
              "plots": plots(preset, cells, summary, out)}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(table, flush=True)
    return result


# ----------------------------------------------------------------------------- the world's acceptance

WORLD_ACCEPTANCE = {"pivots_min": 30, "sft_gain_min": 0.15}
"""What a world must give on dev, every seed, before it is used (issue 17): a base that meets
`verdicts.BASE_PREMISES` (competent out of domain, group A and tool use: a base that has lost tool use makes
its retention measure nothing; partly competent in domain), enough pivots, and SFT (the paper's premise)
clearly helping."""


def acceptance(cells: dict[tuple[int, str], dict], seeds: tuple[int, ...],
               pivot_counts: dict[int, int]) -> list[dict[str, Any]]:
    """Per seed: the numbers the base premises and WORLD_ACCEPTANCE name (held-out suites; pivots from
    PivotRL's profile of the base) and whether each passes."""
    a = WORLD_ACCEPTANCE
    rows = []
    for s in seeds:
        base = cells[(s, "base")]["eval"]
        sft = cells[(s, "sft")]["eval"] if (s, "sft") in cells else None
        pivots = pivot_counts.get(s)
        row: dict[str, Any] = {"seed": s, "base_group_a": base["ood_group_a"]["success"],
                               "base_tool": base["ood_tool"]["success"], "base_in_domain": base["in_domain"]["success"],
                               "pivots": pivots,
                               "sft_gain": None if sft is None else sft["in_domain"]["success"] - base["in_domain"]["success"]}
        row["pass"] = {**{f"base_{k}": ok for k, ok in premise_checks(base).items()},
                       "pivots": pivots is not None and pivots >= a["pivots_min"],
                       "sft_gain": row["sft_gain"] is not None and row["sft_gain"] >= a["sft_gain_min"]}
        rows.append(row)
    return rows


def _pivots_cell(preset: GridPreset, seed: int) -> tuple[str, dict[str, Any]]:
    """(name, spec) of a seed's stored pivot profile (the world check's profile of the base)."""
    return f"seed{seed}__pivots", {"preset": preset.key(), "seed": seed}


def world_check(preset_name: str, preset: GridPreset, out_root: Path, work_root: Path, threads: int,
                shard: tuple[int, int] = (0, 1)) -> dict[str, Any] | None:
    """The world's acceptance on dev: the base and SFT cells of every seed and PivotRL's pivots (its
    profile of the base, no training: the count is all acceptance needs; a later grid's PivotRL cell reads
    the same profile file back), then WORLD_ACCEPTANCE per seed, logged to log.jsonl like every grid run.
    Returns None while other shards still have seeds to run."""
    preset = dataclasses.replace(preset, methods=("base", "sft"))
    run_grid(preset_name, out_root, preset, work_root, shard=shard, threads=threads)
    out, work = _grid_dirs(preset_name, preset, out_root, work_root, threads)
    cache = StageCache(out / "cells" / preset.key())
    tasks = world(preset)
    for i, seed in enumerate(preset.seeds):
        if i % shard[1] == shard[0]:
            def compute(s: int = seed) -> dict[str, Any]:
                return profile_cell(preset, s, tasks, work)

            cache.run(*_pivots_cell(preset, seed), compute)
    stored = stored_cells(cache, preset, planned_cells(preset))  # every shard's: the last to finish judges
    pivots = {s: cache.get(*_pivots_cell(preset, s)) for s in preset.seeds}
    if any(v is None for v in [*stored.values(), *pivots.values()]):
        print(f"shard {shard[0]}/{shard[1]} done; other shards still have seeds to run", flush=True)
        return None
    rows = acceptance({(s, m): v for (s, m, _), v in stored.items() if v is not None}, preset.seeds,
                      {s: v["pivots"] for s, v in pivots.items() if v is not None})
    for r in rows:
        print(json.dumps(r), flush=True)
    ok = all(all(r["pass"].values()) for r in rows)
    _log(out_root, {"event": "world_check", "preset": preset_name, "key": preset.key(), "threads": threads,
                    "rows": rows, "accepted": ok, "config": dataclasses.asdict(preset)})
    print(f"world v{miniworld.WORLD_VERSION} on {preset.phase}: {'accepted' if ok else 'NOT accepted'} "
          f"({threads} torch thread(s))", flush=True)
    return {"rows": rows, "accepted": ok}


def rejudge(preset_name: str, out_root: Path = RESULTS) -> dict[str, Any]:
    """Recompute the summary, claims, table and plots of a finished grid from its results.json (its
    cells and the run's meta are kept as they were): for a change in how numbers are summarised, never
    a reason to re-run cells."""
    out = out_root / preset_name
    result = json.loads((out / "results.json").read_text())
    fields = {f.name for f in dataclasses.fields(GridPreset)}
    cfg: dict[str, Any] = {k: tuple(v) if k in ("seeds", "methods") else v for k, v in result["config"].items() if k in fields}
    preset = GridPreset(**cfg)
    cells = {(c["seed"], c["method"]): c for c in result["cells"]}
    meta = {**result["meta"], "rejudged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rejudged_commit": _git_commit()}
    new = write_results(preset, cells, meta, out)
    _log(out_root, {"event": "rejudge", "preset": preset_name, "key": meta["key"],
                    "claims": [[c["claim"], c["verdict"]] for c in new["summary"]["claims"]]})
    return new


def check_filled(result: dict[str, Any]) -> list[str]:
    """Problems with a result: a missing cell or a number that is not finite (empty = all good). A seed
    left out for its base needs only its base cell (its other cells may have been skipped)."""
    problems = []
    cfg = result["config"]
    have = {(c["seed"], c["method"]) for c in result["cells"]}
    left_out = {e["seed"] for e in result["summary"].get("excluded_seeds", [])}
    for s in cfg["seeds"]:
        for m in cfg["methods"]:
            if (s, m) not in have and (s not in left_out or m == "base"):
                problems.append(f"missing cell seed={s} method={m}")
    for m, row in result["summary"]["methods"].items():
        for suite in (*SUITES, "ood"):
            for k in ("mean", "lo", "hi"):
                if not math.isfinite(row[suite][k]):
                    problems.append(f"{m} {suite} {k} = {row[suite][k]}")
        for k, v in row["costs"].items():
            if not math.isfinite(v):
                problems.append(f"{m} cost {k} = {v}")
    return problems


def _shard(text: str) -> tuple[int, int]:
    i, n = (int(x) for x in text.split("/"))
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard wants i/n with 0 <= i < n, got {text}")
    return i, n


def _imported_from_elsewhere() -> str | None:
    """Why a run from this directory would not run this directory's code, or None. A long run is started
    from a `git archive` snapshot of the tree; with the project installed editable, `pivotrl` imports the
    checkout it was installed from, not the snapshot, so the snapshot's results would record code it did
    not run."""
    here = Path.cwd() / "pivot_algo"
    imported = Path(__file__).resolve().parents[1]
    if here.is_dir() and here.resolve() != imported:
        return (f"this directory holds its own pivot_algo ({here}) but Python imported {imported}: run with "
                f"PYTHONPATH={Path.cwd()} (or from the checkout Python imports)")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pivotrl table", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--preset", default="ci", choices=sorted(PRESETS))
    parser.add_argument("--out", default=str(RESULTS), help=f"results root (default {RESULTS})")
    parser.add_argument("--work", default=str(Path("runs") / "paper_table"),
                        help="checkpoints and profiles (default runs/paper_table, git-ignored)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds instead of the preset's (e.g. 0)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the preset's methods")
    parser.add_argument("--shard", type=_shard, default=(0, 1), help="i/n: run the seeds at positions i mod n (one process per core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1)")
    parser.add_argument("--horizon", type=int, default=None,
                        help="operations per in-domain task (the horizon sweep; default 2 or 3); results go to <preset>-h<H>")
    parser.add_argument("--skip-excluded", action="store_true",
                        help="test phase: run each seed's base first and skip the other cells of a seed whose base "
                             "fails the premises (the table leaves it out anyway)")
    parser.add_argument("--lr-grid", default=None, help="comma-separated rates: run SFT, PivotRL and E2E-RL at each (dev)")
    parser.add_argument("--rejudge", action="store_true",
                        help="recompute the table, claims and plots of a finished grid from its results.json (no cell re-run)")
    parser.add_argument("--world-check", action="store_true", help="the world's acceptance check (dev presets only)")
    parser.add_argument("--horizon-summary", action="store_true",
                        help="claim 3 against the horizon: read the finished <preset>-h<H> runs, write <preset>-horizon/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    elsewhere = _imported_from_elsewhere()
    if elsewhere:
        parser.error(elsewhere)
    preset = PRESETS[args.preset]
    if (args.world_check or args.lr_grid) and preset.phase != "dev":
        parser.error("--world-check and --lr-grid design the world and choose rates: run them on a dev-phase preset")
    if args.seeds:
        preset = dataclasses.replace(preset, seeds=tuple(int(x) for x in args.seeds.split(",")))
    if args.horizon is not None:
        if not 1 <= args.horizon <= 16:
            parser.error(f"--horizon must be 1..16 (numbers must fit the 4-digit display), got {args.horizon}")
        preset = dataclasses.replace(preset, horizon=args.horizon)
    if args.methods:
        unknown = sorted(set(args.methods.split(",")) - set(METHODS))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
        preset = dataclasses.replace(preset, methods=tuple(args.methods.split(",")))
    if args.skip_excluded and (refusal := skip_excluded_refusal(preset)):
        parser.error(refusal)
    if args.rejudge:
        rejudge(args.preset, Path(args.out))
        return 0
    if args.horizon_summary:
        try:
            horizon.write_summary(Path(args.out), args.preset)
        except FileNotFoundError as e:
            parser.error(str(e))
        return 0
    if args.world_check:
        check = world_check(args.preset, preset, Path(args.out), Path(args.work), args.threads, args.shard)
        return 0 if check is None or check["accepted"] else 1
    lr_grid = tuple(float(x) for x in args.lr_grid.split(",")) if args.lr_grid else ()
    result = run_grid(args.preset, Path(args.out), preset, Path(args.work), shard=args.shard, lr_grid=lr_grid,
                      threads=args.threads, skip_excluded=args.skip_excluded)
    if result is None:
        return 0
    problems = check_filled(result)
    for p in problems:
        print(f"paper_table: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
