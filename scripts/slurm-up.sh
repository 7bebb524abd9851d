#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (munged, slurmctld, slurmd) for tests of generated
# Slurm scripts. No systemd, no cgroups, no accounting database: Debian's slurm-wlm 22.05 and munge.
#
# Usage: scripts/slurm-up.sh [STATE_DIR]
#   STATE_DIR  where the key, slurm.conf, spool, logs and PID files live
#              (default: $GENSPEC_SLURM_DIR, else /tmp/genspec-slurm)
# Environment: GENSPEC_SLURM_TIMEOUT   seconds to wait for the node to be idle (default 60)
#              GENSPEC_SLURMCTLD_PORT  slurmctld's port (default 6817); slurmd uses the next one
#              GENSPEC_SLURM_OVERSUBSCRIBE  jobs that may share one core (default 1: none); N > 1 sets
#                  the partition's OverSubscribe=FORCE:N, so many small jobs (array tasks) run at once
#
# Idempotent: a daemon already running from this state directory is left as it is. Stop everything
# with scripts/slurm-down.sh STATE_DIR. Needs root (apt-get, the munge user, daemons as root).
set -euo pipefail

state="${1:-${GENSPEC_SLURM_DIR:-/tmp/genspec-slurm}}"
timeout_s="${GENSPEC_SLURM_TIMEOUT:-60}"
ctld_port="${GENSPEC_SLURMCTLD_PORT:-6817}"
slurmd_port=$((ctld_port + 1))
oversubscribe="${GENSPEC_SLURM_OVERSUBSCRIBE:-1}"
sbin=/usr/sbin
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { echo "slurm-up: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (installs packages, runs munged as the munge user and slurm as root)"
case "$state" in /*) ;; *) state="$PWD/$state" ;; esac

# 1. Packages ------------------------------------------------------------------------------------
created_policy=0
cleanup_policy() {
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup_policy EXIT
trap 'exit 1' INT TERM HUP  # so that the EXIT trap runs on these too

install_packages() {
  if [ -x "$sbin/slurmctld" ] && [ -x "$sbin/slurmd" ] && [ -x "$sbin/munged" ] \
     && command -v sbatch >/dev/null && command -v munge >/dev/null; then
    return 0
  fi
  # Package scripts may try to start the daemons; a policy-rc.d that exits 101 forbids that.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# Temporary, from genspec scripts/slurm-up.sh: no daemon starts during apt-get.\nexit 101\n' \
      > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  log "installing slurm-wlm and munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  cleanup_policy
  created_policy=0
}
install_packages
getent passwd munge >/dev/null || die "the munge package did not create the munge user"

# 2. State directory, key and slurm.conf ------------------------------------------------------------
conf="$state/slurm.conf"
munge_dir="$state/munge"
socket="$munge_dir/munge.socket"
pids="$state/pids"
logs="$state/log"
jobcomp="$logs/jobcomp.log"
node="$(hostname -s)"
# GNU nproc honours OMP_NUM_THREADS: with the test environment's OMP_NUM_THREADS=1 the node had one CPU and
# refused the jobs of a bundle compiled for local-cpu (2 CPUs) ("test node has fewer CPUs than local-cpu").
cpus="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
case "$oversubscribe" in
  ''|*[!0-9]*|0) die "GENSPEC_SLURM_OVERSUBSCRIBE must be a positive integer, not '$oversubscribe'" ;;
  1) share=NO ;;
  *) share="FORCE:$oversubscribe" ;;
esac

mkdir -p "$state" "$pids" "$logs" "$state/spool/slurmctld" "$state/spool/slurmd"
chmod 0755 "$state" "$pids" "$logs"
# munged refuses keys and sockets in directories that others can write to.
mkdir -p "$munge_dir"
chown munge:munge "$munge_dir"
chmod 0755 "$munge_dir"
if [ ! -s "$munge_dir/munge.key" ]; then
  head -c 1024 /dev/urandom > "$munge_dir/munge.key"
fi
chown munge:munge "$munge_dir/munge.key"
chmod 0400 "$munge_dir/munge.key"

new_conf="$(mktemp)"
cat > "$new_conf" <<EOF
# Written by genspec scripts/slurm-up.sh: a one-node cluster for tests. Regenerated on every start.
ClusterName=genspec
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/spool/slurmctld
SlurmdSpoolDir=$state/spool/slurmd
SlurmctldPidFile=$pids/slurmctld.daemon.pid
SlurmdPidFile=$pids/slurmd.daemon.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$jobcomp
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
EnforcePartLimits=ALL
InactiveLimit=0
KillWait=5
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=$share
EOF
conf_changed=0
if ! cmp -s "$new_conf" "$conf"; then
  mv "$new_conf" "$conf"
  chmod 0644 "$conf"
  conf_changed=1
else
  rm -f "$new_conf"
fi
export SLURM_CONF="$conf"
printf 'export SLURM_CONF=%q\n' "$conf" > "$state/env.sh"

# 3. Daemons --------------------------------------------------------------------------------------
# Each runs in the foreground of its own session (setsid execs it, so $! is the daemon itself),
# detached from this script's terminal and output; its PID goes to pids/NAME.pid.
logs_tail() {
  local file
  for file in "$logs"/*.log "$logs"/*.out; do
    [ -s "$file" ] || continue
    echo "----- $file (last 30 lines)" >&2
    tail -n 30 "$file" >&2
  done
}

fail() {
  log "error: $*"
  logs_tail
  log "daemons that did start are left for inspection: stop them with $here/slurm-down.sh $state"
  exit 1
}

running() {  # running NAME: the recorded process is alive and is NAME started from this state directory
  local name="$1" pid
  pid="$(cat "$pids/$name.pid" 2>/dev/null)" || return 1
  bash "$here/slurm-down.sh" --check "$state" "$name" "$pid"
}

start() {  # start NAME COMMAND...: unless running, start COMMAND and record its PID
  local name="$1"; shift
  if running "$name"; then
    log "$name already running (pid $(cat "$pids/$name.pid"))"
    return 0
  fi
  setsid "$@" </dev/null >>"$logs/$name.out" 2>&1 &
  local pid=$! deadline=$((SECONDS + 10))
  echo "$pid" > "$pids/$name.pid"
  # Until setsid (and setpriv) have exec'd the daemon, the process is not yet NAME.
  until running "$name"; do
    kill -0 "$pid" 2>/dev/null || fail "$name (pid $pid) exited at start"
    [ "$SECONDS" -lt "$deadline" ] || fail "pid $pid did not become $name within 10 s"
    sleep 0.1
  done
  log "started $name (pid $pid)"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds
  local seconds="$1" what="$2" name; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    for name in munged slurmctld slurmd; do
      if [ -e "$pids/$name.pid" ] && ! running "$name"; then fail "$name exited while waiting for $what"; fi
    done
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.5
  done
}

munge_works() { munge -n -S "$socket" | unmunge -S "$socket"; }

node_up() {
  local node_state
  node_state="$(sinfo -h -n "$node" -o %T 2>/dev/null)" || return 1
  case "$node_state" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

# A fresh start removes the PID files of daemons that are gone, so a failed wait names only live ones.
for name in munged slurmctld slurmd; do
  running "$name" || rm -f "$pids/$name.pid"
done

start munged setpriv --reuid=munge --regid=munge --init-groups "$sbin/munged" --foreground \
  --socket="$socket" --key-file="$munge_dir/munge.key" --pid-file="$munge_dir/munged.pid" \
  --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed"
wait_for 15 "munged to answer on $socket" munge_works

if [ "$conf_changed" = 1 ] && running slurmctld; then
  log "slurm.conf changed: scontrol reconfigure (a new port or node needs slurm-down.sh, then slurm-up.sh)"
  scontrol reconfigure || log "scontrol reconfigure failed"
fi
# -c: start without the job state of an earlier run.
start slurmctld "$sbin/slurmctld" -D -c -f "$conf"
wait_for 30 "slurmctld to answer" scontrol ping
start slurmd "$sbin/slurmd" -D -N "$node" -f "$conf"
wait_for "$timeout_s" "node $node to be idle (sinfo)" node_up

cat <<EOF
Slurm is up: one node ($node, $cpus CPUs), partition debug, state in $state.
  export SLURM_CONF=$conf      (or: source $state/env.sh)
  sbatch / squeue / scontrol show job ID as usual; no sacct (no slurmdbd).
  Finished jobs, one line each with JobState=: $jobcomp
  Partition debug: OverSubscribe=$share; jobs that can never fit are refused at submission.
  Daemon logs: $logs/
  Stop: $here/slurm-down.sh $state
EOF
