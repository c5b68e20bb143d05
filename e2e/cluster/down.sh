#!/usr/bin/env bash
# Stops the e2e cluster in STATE_DIR (started by up.sh) and removes the
# directory: every process up.sh started gets SIGTERM, and SIGKILL if it is
# still there after a few seconds.
#
#   e2e/cluster/down.sh [--keep] STATE_DIR
#
# --keep leaves the directory (and its logs) in place, for a failed start.
set -euo pipefail

keep=0
if [ "${1:-}" = --keep ]; then
  keep=1
  shift
fi
[ $# -eq 1 ] || {
  echo "usage: $0 [--keep] STATE_DIR" >&2
  exit 2
}
state=$1
[ -d "$state" ] || exit 0

# A process that has exited but not been reaped yet (its parent is gone
# and whoever inherited it has not collected it) counts as stopped.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

targets=()
if [ -f "$state/pids" ]; then
  while read -r name pid; do
    [ -n "$pid" ] && alive "$pid" && targets+=("$pid")
    : "$name"
  done <"$state/pids"
fi

if [ ${#targets[@]} -gt 0 ]; then
  # Each was started in a session of its own (setsid), so its pid is its
  # process group: the group takes along any child it started.
  for pid in "${targets[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    running=0
    for pid in "${targets[@]}"; do
      alive "$pid" && running=$((running + 1))
    done
    [ $running -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${targets[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
fi

[ $keep -eq 1 ] || rm -rf "$state"
