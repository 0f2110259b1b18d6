#!/bin/bash
# Terminal-Bench runs this with the tests copied to $TEST_DIR. No network here, so plain python
# instead of installing pytest.
python3 "$TEST_DIR/test_outputs.py"
