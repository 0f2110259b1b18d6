"""Out-of-domain evaluation of one or more models, side by side.

    .venv/bin/python benchmarks/ood_eval.py --model smollm2-135m --limit 10
    .venv/bin/python benchmarks/ood_eval.py --model smollm2-135m runs/sft/final runs/pivotrl/final --limit 50

Each `--model` is "tiny", "smollm2-135m" or a directory written by `HFPolicy.save()`. Every model sees
the same items (same `--seed`), decoded greedily. Prints one markdown table per model and a side-by-side
table, and writes everything (per-item verdicts included) to `--out` (default benchmarks/results/ood.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch

from pivot_algo.eval.ood import (
    DEFAULT_BENCHMARKS,
    OODReport,
    compare_table,
    policy_generate_fn,
    run_ood_eval,
)
from pivot_algo.policy import load_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="tiny | smollm2-135m | PATH (several: side by side)")
    parser.add_argument("--limit", type=int, default=10, help="items per benchmark (default 10)")
    parser.add_argument("--benchmarks", nargs="+", default=list(DEFAULT_BENCHMARKS), help="subset to run")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is faster when other jobs share the cores)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ood.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    if args.threads:
        torch.set_num_threads(args.threads)

    reports: dict[str, OODReport] = {}
    load_s: dict[str, float] = {}
    for spec in args.model:
        t0 = time.perf_counter()
        policy = load_policy(spec)
        load_s[spec] = time.perf_counter() - t0
        generate = policy_generate_fn(policy, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        report = run_ood_eval(generate, benchmarks=args.benchmarks, limit_per_benchmark=args.limit, seed=args.seed,
                              model=spec)
        reports[spec] = report
        print(f"\n## {spec} (loaded in {load_s[spec]:.1f} s, evaluated in {report.wall_s:.1f} s)\n")
        print(report.to_table())
        del policy

    print("\n## side by side\n")
    print(compare_table(reports))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"settings": {"limit": args.limit, "seed": args.seed, "max_new_tokens": args.max_new_tokens,
                            "decoding": "greedy", "batch_size": args.batch_size},
               "load_s": {k: round(v, 2) for k, v in load_s.items()},
               "table": compare_table(reports),
               "models": {spec: r.to_dict() for spec, r in reports.items()}}
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
