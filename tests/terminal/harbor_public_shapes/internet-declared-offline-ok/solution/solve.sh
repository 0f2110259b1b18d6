#!/bin/bash
grep -v '^#' /app/hosts | awk '{print $1 "," $2}' > /app/hosts.csv
