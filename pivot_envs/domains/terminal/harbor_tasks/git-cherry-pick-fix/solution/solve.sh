#!/bin/bash
set -e
cd /app/repo
git log --oneline --all
fix=$(git log experiment --format='%H %s' | awk '$2 == "Fix" && /Fix greeting punctuation/ {print $1}')
git show --stat "$fix"
git cherry-pick "$fix"
git log --oneline -n 3
git status --short
