#!/bin/bash
mkdir -p /app/by_group
while IFS= read -r rec; do
  IFS=: read -r name uid groups <<< "$rec"
  IFS=, read -ra glist <<< "$groups"
  for g in "${glist[@]}"; do
    echo "$name" >> "/app/by_group/$g.txt"
  done
done < /app/users.txt
sort -t' ' -k2,2n <<< "$(while IFS=: read -r n u _; do echo "$n $u"; done < /app/users.txt)" > /app/uids.txt
head -n 5 /app/by_group/*.txt /app/uids.txt
