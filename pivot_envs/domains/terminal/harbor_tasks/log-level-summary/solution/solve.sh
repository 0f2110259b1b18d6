#!/bin/bash
set -e
# Inspect the log first.
head -n 5 logs/app.log
# Count each level, highest first.
awk '{print $2}' logs/app.log | sort | uniq -c | sort -rn | awk '{print $2, $1}' > summary.txt
grep ' ERROR ' logs/app.log > errors.log
cat summary.txt
wc -l errors.log
