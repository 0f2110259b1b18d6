#!/usr/bin/env bash
# Claim 1 on 20 seeds of one CPU (AMD EPYC): the full preset's seeds 0-19 (0-9 read back), shard $1 of 2;
# same code as 275fd90; resumable. The verdict rule is unchanged (verdicts.py, t over seeds).
set -u
cd /work/amd/src
export PYTHONPATH=/work/amd/src PIVOTRL_CACHE=/work/amd/cache
/work/main/.venv/bin/python -m pivot_algo.cli table --preset full --seeds $(seq -s, 0 19) --shard $1/2 --threads 1 \
  --out /work/amd/results20 --work /work/amd/work
echo "=== $(date -u +%FT%TZ) shard $1 exit $?"
