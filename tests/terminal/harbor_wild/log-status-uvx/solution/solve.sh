#!/bin/bash
set -euo pipefail
cd /app
declare -A counts=()
total=0
while read -r line; do
  read -r _ip _method _path status bytes <<< "$line"
  counts[$status]=$(( ${counts[$status]:-0} + 1 ))
  total=$(( total + bytes ))
done < access.log
for s in $(printf '%s\n' "${!counts[@]}" | sort -n); do
  echo "$s ${counts[$s]}"
done > report.txt
echo "$total" > bytes.txt
cat report.txt bytes.txt
