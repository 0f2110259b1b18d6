#!/bin/bash
conf=/app/conf/site.conf
cp "$conf" "$conf.bak" && \
  sed -i \
    -e 's/listen 80;/listen 8080;/' \
    -e 's/server_name localhost;/server_name example.internal;/' \
    "$conf"
sed -i 's/autoindex on;/autoindex off;/' "$conf" &&
  grep -n -E 'listen|server_name|autoindex' "$conf"
