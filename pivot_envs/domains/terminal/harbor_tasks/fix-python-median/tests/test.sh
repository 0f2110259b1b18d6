#!/bin/bash
# Exit status is the verdict (no reward file).
python3 /tests/test_median.py
