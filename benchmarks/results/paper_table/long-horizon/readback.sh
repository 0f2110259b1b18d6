#!/usr/bin/env bash
# Paths are the ones this run used (/work/sweep/results live cells, /work/main a checkout): set them to yours.
# Read the finished cells back into a copy (never the live results folder) and print the horizon summary.
# Args: seeds for H=2, 4, 8, 16 (comma-separated; pass only seeds whose cells at that H are finished:
# a missing cell would be trained, so each read-back is capped by `timeout`).
set -eu
rm -rf /tmp/hs /tmp/hs-work && mkdir -p /tmp/hs /tmp/hs-work
for d in /work/sweep/results/long-h2 /work/sweep/results/long-h4 /work/sweep/results/long-h8 /work/sweep/results/long-h16 /work/sweep/results/long-horizon; do
  mkdir -p /tmp/hs/$(basename $d); cp -r $d/. /tmp/hs/$(basename $d)/
done
cd /work/main
i=0
for H in 2 4 8 16; do
  i=$((i+1)); SEEDS=${!i}
  timeout 300 .venv/bin/python -m pivot_algo.cli table --preset long --horizon $H --methods base,pivotrl,e2e_grpo \
    --seeds $SEEDS --skip-excluded --threads 1 --out /tmp/hs --work /tmp/hs-work 2>&1 | tail -n 2
done
.venv/bin/python -m pivot_algo.cli table --preset long --horizon-summary --out /tmp/hs
