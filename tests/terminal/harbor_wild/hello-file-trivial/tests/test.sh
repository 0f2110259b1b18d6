#!/bin/bash
# Buggy verifier: checks the folder, not the file, so the untouched state already passes.
if [ -d /app ]; then
  echo '{"reward": 1.0}' > /logs/verifier/reward.json
else
  echo '{"reward": 0.0}' > /logs/verifier/reward.json
fi
