#!/bin/bash
# Partial credit: the reward is the fraction of the four checks that pass.
conf=/app/conf/site.conf
passed=0
grep -q '^    listen 8080;$' "$conf" && passed=$((passed + 1))
grep -q '^    server_name example.internal;$' "$conf" && passed=$((passed + 1))
grep -q '^    autoindex off;$' "$conf" && passed=$((passed + 1))
grep -q 'listen 80;' "$conf.bak" 2>/dev/null && passed=$((passed + 1))
awk -v p="$passed" 'BEGIN { printf "%.2f\n", p / 4 }' > /logs/verifier/reward.txt
echo "passed $passed of 4"
