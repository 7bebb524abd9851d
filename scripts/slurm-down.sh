#!/usr/bin/env bash
# Stops the one-node Slurm cluster that scripts/slurm-up.sh started: exactly the daemons whose PIDs it
# recorded in STATE_DIR/pids, each only if that PID is still that daemon started from STATE_DIR.
# Jobs still queued or running are cancelled first (bounded), so no job step outlives the cluster.
# Other processes, including other Slurm or munge daemons on this machine, are left alone.
#
# Usage: scripts/slurm-down.sh [STATE_DIR]   (default: $GENSPEC_SLURM_DIR, else /tmp/genspec-slurm)
#        scripts/slurm-down.sh --check STATE_DIR NAME PID
#            exit 0 when PID is daemon NAME (munged, slurmctld, slurmd) started from STATE_DIR
# Exit status: 0 when none of the recorded daemons is left running.
set -euo pipefail

# is_daemon STATE NAME PID: the process PID runs /usr/sbin/NAME (resolved) with STATE's files on its command line.
is_daemon() {
  local state="$1" name="$2" pid="$3" exe binary marker args
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1  # fails for a zombie too
  # /usr/sbin/slurmctld is an alternatives link (to slurmctld-wlm); an upgrade leaves "PATH (deleted)".
  binary="$(readlink -f "/usr/sbin/$name")"
  case "$exe" in "$binary"|"$binary (deleted)") ;; *) return 1 ;; esac
  case "$name" in
    munged) marker="$state/munge/munge.socket" ;;
    *) marker="$state/slurm.conf" ;;
  esac
  # Read the whole command line first: grep -q closing a pipe early would fail it under pipefail.
  args="$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  grep -qxF -e "$marker" -e "--socket=$marker" <<< "$args"
}

if [ "${1:-}" = "--check" ]; then
  [ "$#" = 4 ] || { echo "usage: slurm-down.sh --check STATE_DIR NAME PID" >&2; exit 2; }
  is_daemon "$2" "$3" "$4"
  exit
fi

state="${1:-${GENSPEC_SLURM_DIR:-/tmp/genspec-slurm}}"
case "$state" in /*) ;; *) state="$PWD/$state" ;; esac
pids="$state/pids"
log() { echo "slurm-down: $*" >&2; }

recorded() {  # recorded NAME: prints the recorded PID if it is still that daemon
  local pid
  pid="$(cat "$pids/$1.pid" 2>/dev/null)" || return 1
  is_daemon "$state" "$1" "$pid" || return 1
  echo "$pid"
}

gone() {  # gone PID NAME SECONDS: wait until PID is no longer NAME from this state directory
  local deadline=$((SECONDS + $3))
  while is_daemon "$state" "$2" "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

if [ ! -d "$pids" ]; then
  log "nothing recorded in $pids: nothing to stop"
  exit 0
fi

# Cancel what is still queued or running while slurmctld can still do it.
if recorded slurmctld >/dev/null && [ -f "$state/slurm.conf" ]; then
  export SLURM_CONF="$state/slurm.conf"
  jobs="$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u)" || jobs=""
  if [ -n "$jobs" ]; then
    log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
    # shellcheck disable=SC2086  # one argument per job ID
    timeout 10 scancel $jobs || log "scancel failed; stopping the daemons anyway"
    deadline=$((SECONDS + 15))
    while [ -n "$(timeout 5 squeue -h -t running,completing -o %A 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.5
    done
  fi
fi

status=0
stopped=0
for name in slurmd slurmctld munged; do
  file="$pids/$name.pid"
  [ -e "$file" ] || continue
  if ! pid="$(recorded "$name")"; then
    log "$name: recorded PID $(cat "$file" 2>/dev/null || true) is not running as $name from $state; left alone"
    rm -f "$file"
    continue
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! gone "$pid" "$name" 15; then
    log "$name (pid $pid) ignored SIGTERM for 15s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    if ! gone "$pid" "$name" 5; then
      log "error: $name (pid $pid) is still running"
      status=1
      continue
    fi
  fi
  log "stopped $name (pid $pid)"
  stopped=$((stopped + 1))
  rm -f "$file"
done
[ "$stopped" -gt 0 ] || [ "$status" != 0 ] || log "no daemon of $state was running"
# The daemons' own PID files (slurm.conf's SlurmctldPidFile and SlurmdPidFile, munged's --pid-file).
if [ "$status" = 0 ]; then
  rm -f "$pids/slurmctld.daemon.pid" "$pids/slurmd.daemon.pid" "$state/munge/munged.pid"
fi
exit "$status"
