#!/bin/bash
cd /app/backups || exit 1
[ "$(cat KEPT 2>/dev/null)" = "$(printf 'db-20240301.tar.gz\ndb-20240220.tar.gz\ndb-20240215.tar.gz')" ] || exit 1
[ "$(ls db-*.tar.gz | sort | tr '\n' ' ')" = "db-20240215.tar.gz db-20240220.tar.gz db-20240301.tar.gz " ] || exit 1
[ "$(ls old | sort | tr '\n' ' ')" = "db-20240101.tar.gz db-20240103.tar.gz db-20240110.tar.gz " ] || exit 1
echo 1 > /logs/verifier/reward.txt
