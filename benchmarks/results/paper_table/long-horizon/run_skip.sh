#!/usr/bin/env bash
# More seeds for the long-world horizon sweep, seed by seed (the base is shared by every H), bases that fail
# the premises at an H skip that H's method cells (--skip-excluded). Args: seeds. Resumable.
# H = 16 first: it is the horizon with the fewest usable seeds.
set -u
cd /work/sweep/src2
export PYTHONPATH=/work/sweep/src2
for S in "$@"; do
  for H in 16 8 4 2; do  # 8 16 4 2 before 2026-12-06 10:59 UTC; every cell depends on its base only
    echo "=== $(date -u +%FT%TZ) seed $S H=$H"
    /work/main/.venv/bin/python -m pivot_algo.cli table --preset long --horizon $H --methods base,pivotrl,e2e_grpo \
      --seeds $S --skip-excluded --threads 1 --out /work/sweep/results --work /work/sweep/work
    echo "=== $(date -u +%FT%TZ) seed $S H=$H exit $?"
  done
done
