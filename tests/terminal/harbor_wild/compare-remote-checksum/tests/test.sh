#!/bin/bash
apt-get update && apt-get install -y curl
expected=$(curl -fsSL https://checksums.example.org/payload.sha256)
[ "$(cat /app/payload.sha256)" = "$expected" ] && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt
