#!/bin/bash
# Harbor verifier: writes the reward file (1 = pass, 0 = fail).
mkdir -p /logs/verifier
if python3 /tests/check_summary.py; then
    echo 1 > /logs/verifier/reward.txt
else
    echo 0 > /logs/verifier/reward.txt
fi
