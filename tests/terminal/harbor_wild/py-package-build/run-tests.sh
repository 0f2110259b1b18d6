#!/bin/bash
cd /app
out=$(python -c "from mathlib.ops import add; print(add(2, 3))" 2>&1) || exit 1
[ "$out" = "5" ] || exit 1
[ ! -e /app/helpers.py ] || exit 1
[ "$(cat /app/layout.txt)" = "$(printf 'mathlib/__init__.py\nmathlib/ops.py')" ] || exit 1
