#!/bin/bash
set -u
mkdir -p /logs/verifier
cd /app/repo
ok=1
[ "$(git rev-parse --abbrev-ref HEAD)" = main ] || { echo "main is not checked out"; ok=0; }
[ "$(git log -1 --format=%s main)" = "Fix greeting punctuation" ] || { echo "last commit on main is not the fix"; ok=0; }
[ "$(git rev-list --count main)" = 2 ] || { echo "main should have exactly 2 commits"; ok=0; }
grep -q '"!"' greet.py || { echo "greet.py is not fixed"; ok=0; }
[ "$(cat tuning.py)" = "speed = 1" ] || { echo "experimental tuning leaked into main"; ok=0; }
[ -z "$(git status --porcelain)" ] || { echo "working tree is not clean"; ok=0; }
echo "$ok" > /logs/verifier/reward.txt
