#!/usr/bin/env bash
# The 10-seed test phase again on this CPU (AMD EPYC), shard $1 of 2; same code as 275fd90; resumable.
set -u
cd /work/amd/src
export PYTHONPATH=/work/amd/src PIVOTRL_CACHE=/work/amd/cache
/work/main/.venv/bin/python -m pivot_algo.cli table --preset full --shard $1/2 --threads 1 \
  --out /work/amd/results --work /work/amd/work
echo "=== $(date -u +%FT%TZ) shard $1 exit $?"
