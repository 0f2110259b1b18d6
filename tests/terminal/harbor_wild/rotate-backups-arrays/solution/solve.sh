#!/bin/bash
set -euo pipefail

KEEP=3
export LC_ALL=C
cd /app/backups

newest_first() {
  printf '%s\n' "$@" | sort -r
}

mapfile -t all < <(ls db-*.tar.gz)
sorted=(
  $(newest_first "${all[@]}")
)
keep=("${sorted[@]:0:$KEEP}")
drop=("${sorted[@]:$KEEP}")
mkdir -p old
for f in "${drop[@]}"; do
  mv "$f" old/
done
printf '%s\n' "${keep[@]}" > KEPT
cat KEPT
ls old
