#!/bin/bash
set -euo pipefail

cat stats.py
python3 stats.py 3 1 2 10 || true

# Rewrite the function body: sort a copy, average the middle pair for even lengths.
python3 - <<'EOF'
import re
src = open("stats.py").read()
fixed = '''def median(values):
    """Return the median of a non-empty list of numbers."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    if n % 2 == 1:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
'''
src = re.sub(r"def median\(values\):\n(?:    .*\n)+", fixed, src)
open("stats.py", "w").write(src)
EOF

for args in "3 1 2 10" "5 1 3"; do
    echo "median of $args: $(python3 stats.py $args)"
done
