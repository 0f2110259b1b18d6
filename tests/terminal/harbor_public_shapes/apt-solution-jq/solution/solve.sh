#!/bin/bash
set -e
apt-get update && apt-get install -y jq
jq -r '.[] | select(.active) | .name' /app/users.json > /app/active.txt
