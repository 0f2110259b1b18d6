#!/bin/bash
cd /app/mathlib && touch __init__.py
mv ../helpers.py ops.py
cd /app
python -c "from mathlib.ops import add; print(add(2, 3))" \
  | tee /tmp/out.txt
find mathlib -name '*.py' \
  | sort > layout.txt && cat layout.txt
