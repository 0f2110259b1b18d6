#!/bin/bash
# quiet install of the runner; the redirect is the shell's, not a package
pip install pytest==8.3.5 2>/dev/null
pip install -q "pytest-timeout>=2" >/dev/null 2>&1 # and its timeout plugin

if python -m pytest -q /tests/test_outputs.py; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
