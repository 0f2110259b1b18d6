#!/bin/bash
periods=(
  "2024-01"
  "2024-02"
  "2024-03"
)
declare -A sums
for p in "${periods[@]}"; do
  sums[$p]=0
done
{
  read -r _header
  while IFS=, read -r date region amount; do
    month=${date:0:7}
    if [[ -n "${sums[$month]+x}" ]]; then
      sums[$month]=$(( ${sums[$month]} + amount ))
    fi
  done
} < sales.csv
entries=()
for p in "${periods[@]}"; do
  entries+=("\"$p\": ${sums[$p]}")
done
(IFS=,; echo "{${entries[*]}}") > monthly.json
python3 -m json.tool monthly.json
