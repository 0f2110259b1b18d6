"""Lint ratchet: ruff and mypy findings may only shrink.

The project started with findings in code written before linting was enforced. Rather than hide them
behind ignores, CI counts them and fails when a change adds any; `--update` lowers the stored baseline
after a clean-up (it never raises it). A mypy run that could not check the code (a crash, "errors
prevented further checking", no summary line) fails the gate whatever count it printed.

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


class MypyDidNotCheck(Exception):
    """mypy stopped before checking everything (a crash, a configuration or module-mapping error): its
    count, if it printed one, is not the number of findings."""


_SUCCESS = re.compile(r"Success: no issues found in \d+ source files?")
_FOUND = re.compile(r"Found (\d+) errors? in \d+ files?(?: \(checked \d+ source files?\))?")


def mypy_findings(returncode: int, stdout: str, stderr: str = "") -> int:
    """The number of findings in one mypy run's output, or MypyDidNotCheck when the run is not a
    complete check: an exit status other than 0 (clean) or 1 (findings), "errors prevented further
    checking" anywhere, or a last line that is not mypy's summary (or disagrees with the exit status)."""
    output = stdout + "\n" + stderr
    if "errors prevented further checking" in output:
        raise MypyDidNotCheck("mypy reported that errors prevented further checking")
    if returncode not in (0, 1):
        raise MypyDidNotCheck(f"mypy exited {returncode}")
    last = (stdout.strip().splitlines() or [""])[-1].strip()
    if _SUCCESS.fullmatch(last):
        if returncode != 0:
            raise MypyDidNotCheck(f"mypy printed success but exited {returncode}")
        return 0
    m = _FOUND.fullmatch(last)
    if m is None:
        raise MypyDidNotCheck(f"no summary line from mypy (last line: {last!r})")
    if returncode != 1:
        raise MypyDidNotCheck(f"mypy printed findings but exited {returncode}")
    return int(m.group(1))


def count_mypy() -> int:
    out = subprocess.run([sys.executable, "-m", "mypy", *MYPY_TARGETS], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    try:
        return mypy_findings(out.returncode, out.stdout, out.stderr)
    except MypyDidNotCheck as e:
        raise SystemExit(f"[lint] mypy did not check the code ({e}): fix that first; its output:\n"
                         f"{out.stdout[-4000:]}{out.stderr[-2000:]}") from None


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
