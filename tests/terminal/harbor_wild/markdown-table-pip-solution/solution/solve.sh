#!/bin/bash
set -e
pip install --quiet tabulate==0.9.0
python3 - <<'PY'
import csv

from tabulate import tabulate

with open("/app/scores.csv", newline="") as fh:
    rows = list(csv.reader(fh))
with open("/app/scores.md", "w") as out:
    out.write(tabulate(rows[1:], headers=rows[0], tablefmt="github") + "\n")
PY
cat /app/scores.md
