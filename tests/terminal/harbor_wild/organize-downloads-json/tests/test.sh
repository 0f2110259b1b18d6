#!/bin/bash
# Scores with reward.json and always exits 0 (the exit status is not the result).
cd /app/downloads 2>/dev/null || { echo '{"reward": 0.0}' > /logs/verifier/reward.json; exit 0; }
expected="documents/notes.txt
documents/plan.pdf
images/cat.jpg
images/logo.png
other/data.bin
other/setup.exe"
ok=1
for f in $expected; do
  [ -f "$f" ] || ok=0
done
[ "$(cat index.txt 2>/dev/null)" = "$expected" ] || ok=0
[ -z "$(find . -maxdepth 1 -type f ! -name index.txt)" ] || ok=0
printf '{"reward": %s, "files_checked": 6}\n' "$ok" > /logs/verifier/reward.json
exit 0
