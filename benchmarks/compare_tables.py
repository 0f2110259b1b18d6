"""Two finished paper-table grids side by side: each claim's numbers and verdict, and each method's
held-out accuracy, from their results.json. For a replication: the same preset and code run on another
CPU (or a GPU), where the float rounding and so every trained model differ, but the verdict rule should not.

    python benchmarks/compare_tables.py benchmarks/results/paper_table/full-intel benchmarks/results/paper_table/full \
        --names "Intel" "AMD EPYC"

Prints markdown: a claims table (paired differences with their 95% intervals, and the verdicts, one
column per grid; "same" / "differs" per claim) and the methods' in-domain and OOD means per grid.
`--pool` adds the claims' paired differences over every grid's seeds together (a t-interval over all the
runs, as if each were a replicate) and the correlation of the per-seed differences between the first two
grids: an analysis beside the verdicts, never one of them (the verdict rule reads one grid).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pivot_algo.experiments.presets import LABELS
from pivot_algo.experiments.report import number_text, success_matrix
from pivot_algo.experiments.stats import t_interval

POOLED = (("pivotrl", "sft", "in_domain"), ("sft", "base", "ood"), ("pivotrl", "base", "ood"),
          ("pivotrl", "sft", "ood"), ("pivotrl", "e2e_grpo", "in_domain"), ("pivotrl", "pivotrl_null_reward", "in_domain"),
          ("pivotrl_random_turns", "pivotrl", "in_domain"))
"""(a, b, suite): the claims' paired differences a - b that --pool reports."""


def load(grid: Path) -> dict[str, Any]:
    path = grid / "results.json"
    if not path.is_file():
        raise SystemExit(f"compare_tables: {path} not found: give the folder of a finished grid "
                         "(`pivotrl table --preset P` writes <out>/<P>/results.json when every cell is done)")
    return json.loads(path.read_text())


def claim_rows(results: list[dict[str, Any]]) -> list[str]:
    by_claim: dict[str, list[dict[str, Any] | None]] = {}
    for i, r in enumerate(results):
        for c in r["summary"]["claims"]:
            by_claim.setdefault(c["claim"], [None] * len(results))[i] = c
    lines = []
    for claim, per in by_claim.items():
        cells = ["; ".join(number_text(k, v) for k, v in c["numbers"].items()) + f" **{c['verdict']}**" if c else "-"
                 for c in per]
        verdicts = {c["verdict"] for c in per if c}
        agree = "same" if len(verdicts) == 1 and all(per) else "differs"
        lines.append(f"| {claim} | " + " | ".join(cells) + f" | {agree} |")
    return lines


def method_rows(results: list[dict[str, Any]]) -> list[str]:
    methods = list(dict.fromkeys(m for r in results for m in r["summary"]["methods"]))
    lines = []
    for m in methods:
        parts = []
        for r in results:
            row = r["summary"]["methods"].get(m)
            parts.append("-" if row is None else
                         f"{row['in_domain']['mean'] * 100:.1f} / {row['ood']['mean'] * 100:.1f}")
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(parts) + " |")
    return lines


def per_seed_differences(result: dict[str, Any], a: str, b: str, suite: str) -> np.ndarray:
    """a - b on `suite` per seed of the grid's summary (its seeds, premises applied), each a mean over tasks."""
    cells = {(c["seed"], c["method"]): c for c in result["cells"]}
    seeds = tuple(result["summary"]["seeds"])
    diff: np.ndarray = (success_matrix(cells, seeds, a, suite) - success_matrix(cells, seeds, b, suite)).mean(axis=1)
    return diff


def pooled_rows(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| a - b, suite | per grid (mean) | all runs pooled [95% t-interval], n | per-seed correlation, grids 1-2 |",
             "|---|---|---|---|"]
    for a, b, suite in POOLED:
        if not all({a, b} <= set(r["config"]["methods"]) for r in results):
            continue
        per = [per_seed_differences(r, a, b, suite) for r in results]
        mean, lo, hi = t_interval(np.concatenate(per).tolist())
        corr = (f"{np.corrcoef(per[0], per[1])[0, 1]:.2f}" if len(per) > 1 and len(per[0]) == len(per[1]) > 2 else "-")
        lines.append(f"| {a} - {b}, {suite} | " + " / ".join(f"{d.mean() * 100:.1f}" for d in per)
                     + f" | {mean * 100:.1f} [{lo * 100:.1f}, {hi * 100:.1f}], n = {sum(len(d) for d in per)} | {corr} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("grids", nargs="+", type=Path, help="folders of finished grids (each with a results.json)")
    parser.add_argument("--names", nargs="+", default=None, help="a column name per grid (default: folder names)")
    parser.add_argument("--pool", action="store_true", help="also the claims' differences pooled over every grid's seeds")
    args = parser.parse_args(argv)
    names = args.names or [g.name for g in args.grids]
    if len(names) != len(args.grids):
        parser.error(f"--names gives {len(names)} names for {len(args.grids)} grids")
    results = [load(g) for g in args.grids]
    seeds = [f"{n} ({len(r['summary']['seeds'])} seeds, commit {r['meta'].get('commit', '?')})"
             for n, r in zip(names, results)]
    out = ["| claim | " + " | ".join(seeds) + " | verdicts |", "|---|" + "---|" * len(results) + "---|"]
    out += claim_rows(results)
    out += ["", "| method: held-out in-domain / OOD % (means over seeds) | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(results)]
    out += method_rows(results)
    if args.pool:
        out += ["", *pooled_rows(results)]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
