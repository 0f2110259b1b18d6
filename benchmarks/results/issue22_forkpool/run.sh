#!/usr/bin/env bash
# Final quiet-machine figures for the fork pool; the horizon sweep is paused (SIGSTOP) meanwhile.
set -u
cd /work/main
PY=/work/main/.venv/bin/python
OUT=/work/quiet/r3
mkdir -p $OUT
pgids=$(ps -eo pgid,args | grep "run.sh [01]" | grep -v grep | awk '{print $1}' | sort -u)
echo "pausing sweep process groups: $pgids"; for g in $pgids; do kill -STOP -- -$g; done
trap 'for g in $pgids; do kill -CONT -- -$g; done; echo resumed' EXIT
sleep 60
echo "code: $(git rev-parse --short HEAD) $(git status --short | wc -l) changed files" | tee $OUT/driver.log
echo "load before: $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
$PY benchmarks/reset_latency.py --compare-before 8755597 35b2231 --backends local docker > $OUT/chain.log 2>&1
cp benchmarks/results/containment_cost.json $OUT/
echo "load: $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
$PY benchmarks/reset_latency.py --compare-before 8755597 35b2231 --backends local --gap-ms 300 > $OUT/gap300.log 2>&1
cp benchmarks/results/containment_cost_gap300ms.json $OUT/
echo "load: $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
$PY benchmarks/reset_phases.py --n 60 --backends local > $OUT/phases.log 2>&1
cp benchmarks/results/reset_phases.json $OUT/
echo "load: $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
$PY benchmarks/verifier_group.py --backends local --local-fork-pool-ab --rounds 5 > $OUT/verifier_ab.log 2>&1
cp benchmarks/results/verifier_group.json $OUT/
echo "load after: $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
#!/usr/bin/env bash
set -u
cd /work/main
PY=/work/main/.venv/bin/python
OUT=/work/quiet/r3
pgids=$(ps -eo pgid,args | grep "run.sh [01]" | grep -v grep | awk '{print $1}' | sort -u)
for g in $pgids; do kill -STOP -- -$g; done
trap 'for g in $pgids; do kill -CONT -- -$g; done; echo resumed' EXIT
sleep 30
echo "phases rerun (reset_phases warms its snapshot): load $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
$PY benchmarks/reset_phases.py --n 60 --backends local docker > $OUT/phases.log 2>&1
cp benchmarks/results/reset_phases.json $OUT/
echo "load after: $(cat /proc/loadavg)  $(date -u +%T)" | tee -a $OUT/driver.log
