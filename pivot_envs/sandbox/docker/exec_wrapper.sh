#!/bin/bash
# Runs one user command in a docker sandbox (pivot_envs/sandbox/docker/sandbox.py passes this file's
# text to `bash -c`). Arguments: $1 command, $2 workdir, $3 time limit (s), $4 cap (bytes),
# $5 cap lifetime (s).
# - `timeout -k 1` enforces the wall-clock limit. It runs in its own process group; when it fires,
#   the whole group is then KILLed until empty, because processes caught mid-fork (a fork bomb
#   retrying under the pids limit) can miss timeout's TERM and outlive it.
# - stdout and stderr each go through a cap (perl: it is Essential in Debian, so in every image,
#   and one perl process is much cheaper than head + cat + timeout) that passes the first $4 bytes
#   on unbuffered and drains the rest: the command never sees SIGPIPE and its exit code survives,
#   and a flood costs CPU, not memory on our side.
# - The caps stop after $5 s (alarm), so a background process that still holds the output pipes
#   (`server &`) cannot hold the call past the time limit.
cmd=$1 limit=$3 cap_bytes=$4 cap_seconds=$5
cd -- "$2" || exit 1
cap() {
  # shellcheck disable=SC2016 # perl code, expanded by perl
  perl -e '$SIG{ALRM} = sub { exit 0 }; alarm $ARGV[1]; my $left = $ARGV[0];
    while (sysread(STDIN, my $buf, 65536)) {
      next if $left <= 0;
      my $part = substr($buf, 0, $left); $left -= length $part;
      while (length $part) { my $n = syswrite(STDOUT, $part) // exit 0; substr($part, 0, $n) = "" }
    }' "$cap_bytes" "$cap_seconds"
}
run() {
  timeout -k 1 "$limit" bash -c "$cmd" </dev/null & pid=$!
  wait "$pid"; rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    while kill -KILL -- "-$pid" 2>/dev/null; do sleep 0.05; done
  fi
  return "$rc"
}
{ { run 2>&1 1>&3 3>&- | cap >&2; exit "${PIPESTATUS[0]}"; } 3>&1 | cap; exit "${PIPESTATUS[0]}"; }
