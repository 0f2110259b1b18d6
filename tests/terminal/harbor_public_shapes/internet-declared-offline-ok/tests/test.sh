#!/bin/bash
[ "$(cat /app/hosts.csv 2>/dev/null)" = "$(printf '127.0.0.1,localhost\n10.0.0.2,db')" ]
