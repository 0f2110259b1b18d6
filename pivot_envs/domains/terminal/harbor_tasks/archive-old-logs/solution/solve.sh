#!/bin/bash
set -e

find /app/var/log -type f | sort

mkdir -p /app/backup
cd /app/var/log
find . -type f -regex '.*\.log\.[0-9]+' | sed 's|^\./||' | sort > /tmp/rotated.txt
tar -czf /app/backup/rotated-logs.tar.gz -T /tmp/rotated.txt
xargs rm -f < /tmp/rotated.txt
wc -l < /tmp/rotated.txt | tr -d ' ' > /app/backup/count.txt
tar -tzf /app/backup/rotated-logs.tar.gz
