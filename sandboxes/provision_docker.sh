#!/usr/bin/env bash
# Provision what the docker sandbox backend needs, doing only what is missing (idempotent):
#   1. a Docker daemon that answers `docker info`: when none does and we are root with apt-get,
#      install docker.io (and debootstrap + bubblewrap + e2fsprogs, used by the image builder, the
#      local backend and the per-sandbox disk quota volumes) if missing, start `dockerd` in the background and wait until it answers;
#   2. the sandbox base image ($PIVOTRL_BASE_IMAGE, default pivotrl/sandbox-base:latest), built by
#      `python -m sandboxes.build` when it is missing.
# A daemon that already answers is left alone. The PID of a dockerd started here is written to
# $PIVOTRL_DOCKERD_PIDFILE (default /tmp/pivotrl-dockerd.pid) so the caller can stop it; its log
# goes to $PIVOTRL_DOCKERD_LOG (default /tmp/pivotrl-dockerd.log).
# Environment: PIVOTRL_PYTHON (interpreter for the builder; default: .venv/bin/python if present,
# else python3), PIVOTRL_DOCKERD_WAIT_S (default 30).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="${PIVOTRL_DOCKERD_PIDFILE:-/tmp/pivotrl-dockerd.pid}"
LOG="${PIVOTRL_DOCKERD_LOG:-/tmp/pivotrl-dockerd.log}"
WAIT_S="${PIVOTRL_DOCKERD_WAIT_S:-30}"
if [ -n "${PIVOTRL_PYTHON:-}" ]; then
  PY="$PIVOTRL_PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
  PY="$REPO/.venv/bin/python"
else
  PY="python3"
fi

say() { echo "[provision_docker] $*"; }
die() { echo "[provision_docker] ERROR: $*" >&2; exit 1; }
daemon_answers() { docker info >/dev/null 2>&1; }
can_apt() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }

install_missing() {
  # $@: "command:package" pairs; installs the packages whose command is missing.
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if ! can_apt; then
    say "missing ${missing[*]} but not root with apt-get; install them yourself"
    return 0
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
}

wait_for_daemon() {
  local waited=0
  until daemon_answers; do
    if [ "$waited" -ge "$WAIT_S" ]; then
      [ -f "$LOG" ] && tail -n 20 "$LOG" >&2
      die "dockerd did not answer within ${WAIT_S} s (log: $LOG)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "docker daemon answers after ${waited} s"
}

# ---------------------------------------------------------------- 1. daemon
if daemon_answers; then
  say "docker daemon already answers; leaving it alone"
  install_missing debootstrap:debootstrap bwrap:bubblewrap mkfs.ext4:e2fsprogs
else
  can_apt || die "no Docker daemon answers and we cannot install one (need root and apt-get); start dockerd yourself"
  install_missing dockerd:docker.io docker:docker.io debootstrap:debootstrap bwrap:bubblewrap mkfs.ext4:e2fsprogs
  if pgrep -x dockerd >/dev/null 2>&1; then
    # A daemon is starting (or wedged); starting a second one would fight over /var/lib/docker.
    say "a dockerd process exists but does not answer yet; waiting for it"
  else
    say "starting dockerd (log: $LOG, pidfile: $PIDFILE)"
    nohup dockerd >"$LOG" 2>&1 </dev/null &
    echo "$!" >"$PIDFILE"
  fi
  wait_for_daemon
fi

# ---------------------------------------------------------------- 2. base image
IMAGE="${PIVOTRL_BASE_IMAGE:-pivotrl/sandbox-base:latest}"
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "image $IMAGE already exists; not building"
else
  say "building $IMAGE with $PY -m sandboxes.build"
  started=$(date +%s)
  (cd "$REPO" && "$PY" -m sandboxes.build --image "$IMAGE" </dev/null)
  say "built $IMAGE in $(( $(date +%s) - started )) s"
fi
say "done"
