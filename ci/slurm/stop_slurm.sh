#!/usr/bin/env bash
# Stop the single-node SLURM started by ci/slurm/start_slurm.sh: slurmd, slurmctld,
# then munged, each by the pid in its pid file. Safe to run when nothing is running.
set -uo pipefail

state_root="${UNIDAD_SLURM_STATE_DIR:-/var/spool/unidad-slurm-ci}"

log() { echo "[stop_slurm] $*"; }

stop_by_pid_file() {
    local name=$1 pid_file=$2 pid
    if [[ ! -s "$pid_file" ]]; then
        log "$name: no pid file ($pid_file), nothing to stop"
        return 0
    fi
    pid=$(cat "$pid_file")
    if ! kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid not running"
        rm -f "$pid_file"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { log "$name (pid $pid) stopped"; rm -f "$pid_file"; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pid_file"
}

if [[ $(id -u) -ne 0 ]]; then
    echo "[stop_slurm] ERROR: needs root, like start_slurm.sh." >&2
    exit 1
fi

stop_by_pid_file slurmd "$state_root/run/slurmd.pid"
stop_by_pid_file slurmctld "$state_root/run/slurmctld.pid"
stop_by_pid_file munged /run/munge/munged.pid
