"""Record the built-in terminal suite into `data/*.jsonl` (shipped in the package).

    python -m pivot_envs.domains.terminal.tasks.build_suite [--backend docker] [--train 120 --val 30 ...]

Each task is set up and solved by its scripted expert in a real sandbox; the test must pass (and
must fail on the initial state), otherwise the build stops with the failing task's transcript.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pivot_envs.domains.terminal.tasks.generator import suite
from pivot_envs.domains.terminal.tasks.recorder import SPLIT_FILES, record_with_check
from pivot_envs.sandbox import backend_names, make_backend

DATA_DIR = Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pivot_envs.domains.terminal.tasks.build_suite",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="docker", choices=backend_names())
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    for split, default in (("train", 120), ("val", 30), ("test", 30), ("heldout_families", 30)):
        parser.add_argument(f"--{split.split('_')[0]}", dest=split, type=int, default=default,
                            help=f"number of {split} trajectories (default {default})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backend = make_backend(args.backend)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        for split, fname in SPLIT_FILES.items():
            started = time.monotonic()
            tasks = suite(split, getattr(args, split), args.seed)
            rows = [record_with_check(t, backend, image=None, check_initial=True)[0] for t in tasks]
            with (args.out / fname).open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            print(f"{split}: {len(rows)} trajectories -> {args.out / fname} "
                  f"({time.monotonic() - started:.0f} s, backend {args.backend})")
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
