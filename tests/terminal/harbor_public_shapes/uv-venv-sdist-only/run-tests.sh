#!/bin/bash
# Terminal-Bench shape: a fresh venv with the test set, from uv
uv venv .tbench-testing -p 3.12
source .tbench-testing/bin/activate
uv pip install pytest==8.3.5 docopt==0.6.2
uv run pytest $TEST_DIR/test_outputs.py -rA
