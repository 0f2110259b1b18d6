"""Lint ratchet: ruff and mypy findings may only shrink.

The project started with findings in code written before linting was enforced. Rather than hide them
behind ignores, CI counts them and fails when a change adds any; `--update` lowers the stored baseline
after a clean-up (it never raises it).

    python .ci/lint.py            # check (CI)
    python .ci/lint.py --update   # after fixing findings: store the lower counts
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "lint_baseline.json"
MYPY_TARGETS = ["pivot_envs", "pivot_algo", "sandboxes", "benchmarks"]


def count_ruff() -> int:
    out = subprocess.run([sys.executable, "-m", "ruff", "check", ".", "--output-format", "json", "-q"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1):
        raise SystemExit(f"ruff failed to run (exit {out.returncode}): {out.stderr.strip()}")
    return len(json.loads(out.stdout or "[]"))


def count_mypy() -> int:
    out = subprocess.run([sys.executable, "-m", "mypy", *MYPY_TARGETS], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    last = (out.stdout.strip().splitlines() or [""])[-1]
    if last.startswith("Success"):
        return 0
    m = re.match(r"Found (\d+) errors? in", last)
    if not m:
        raise SystemExit(f"mypy failed to run (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true", help="store counts that are lower than the baseline")
    args = ap.parse_args()
    baseline = json.loads(BASELINE.read_text())
    now = {"ruff": count_ruff(), "mypy": count_mypy()}
    worse = {k: (baseline[k], v) for k, v in now.items() if v > baseline[k]}
    for tool, n in now.items():
        print(f"[lint] {tool}: {n} findings (baseline {baseline[tool]})")
    if worse:
        for tool, (was, n) in worse.items():
            print(f"[lint] {tool} grew from {was} to {n}: fix the new findings "
                  f"(`{sys.executable} -m {tool} ...` lists them)")
        return 1
    if args.update and now != baseline:
        BASELINE.write_text(json.dumps({k: min(baseline[k], now[k]) for k in now}, indent=2) + "\n")
        print(f"[lint] baseline lowered: {BASELINE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
