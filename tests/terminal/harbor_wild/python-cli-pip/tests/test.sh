#!/bin/bash
pip install pytest==8.4.1

cd /tests
if python -m pytest test_cli.py -q; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
