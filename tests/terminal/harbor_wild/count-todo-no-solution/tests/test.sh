#!/bin/bash
if [ "$(cat /app/todo_count.txt 2>/dev/null | tr -d '[:space:]')" = "3" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
