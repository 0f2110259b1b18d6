#!/bin/bash
python3 - <<'PY'
import re
import sys

lines = open("/app/scores.md").read().splitlines() if __import__("os").path.exists("/app/scores.md") else []
ok = (len(lines) == 5 and re.fullmatch(r"\|\s*name\s*\|\s*score\s*\|\s*grade\s*\|", lines[0])
      and re.fullmatch(r"\|[-:|]+\|", lines[1])
      and [re.split(r"\s*\|\s*", l.strip("| ")) for l in lines[2:]] == [["ada", "91", "A"], ["lin", "78", "C"], ["bo", "85", "B"]])
open("/logs/verifier/reward.txt", "w").write("1\n" if ok else "0\n")
PY
