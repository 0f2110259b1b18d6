#!/bin/bash
cd /app/downloads
mkdir -p images documents other
for f in *.*; do
  [ -f "$f" ] || continue
  case "$f" in
    *.jpg|*.png) dest=images ;;
    *.pdf|*.txt) dest=documents ;;
    *) dest=other ;;
  esac
  mv -- "$f" "$dest/"
done
find images documents other -type f | sort > index.txt
cat index.txt
