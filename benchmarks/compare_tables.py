"""Two finished paper-table grids side by side: each claim's numbers and verdict, and each method's
held-out accuracy, from their results.json. For a replication: the same preset and code run on another
CPU (or a GPU), where the float rounding and so every trained model differ, but the verdict rule should not.

    python benchmarks/compare_tables.py benchmarks/results/paper_table/full-intel benchmarks/results/paper_table/full \
        --names "Intel" "AMD EPYC"

Prints markdown: a claims table (paired differences with their 95% intervals, and the verdicts, one
column per grid; "same" / "differs" per claim) and the methods' in-domain and OOD means per grid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pivot_algo.experiments.presets import LABELS
from pivot_algo.experiments.report import _number


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
        cells = ["; ".join(_number(k, v) for k, v in c["numbers"].items()) + f" **{c['verdict']}**" if c else "-"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("grids", nargs="+", type=Path, help="folders of finished grids (each with a results.json)")
    parser.add_argument("--names", nargs="+", default=None, help="a column name per grid (default: folder names)")
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
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
