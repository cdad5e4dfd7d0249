#!/usr/bin/env bash
# Start a single-node SLURM (munged, slurmctld, slurmd) on this machine for the
# workflow's SLURM smoke run. Idempotent: does nothing when the node already answers.
# Installs the Debian packages when missing. Needs root (CI runs as root).
#
#   bash ci/slurm/start_slurm.sh        # start (or confirm it is running)
#   bash ci/slurm/stop_slurm.sh         # stop the daemons this script started
#
# State, logs and pid files: $UNIDAD_SLURM_STATE_DIR (default /var/spool/unidad-slurm-ci).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state_root="${UNIDAD_SLURM_STATE_DIR:-/var/spool/unidad-slurm-ci}"
slurm_conf=/etc/slurm/slurm.conf
marker="GENERATED-BY: unidad-bench ci/slurm/start_slurm.sh"
packages=(slurmctld slurmd slurm-client munge)
started_at=$(date +%s)

log() { echo "[start_slurm] $*"; }
die() { echo "[start_slurm] ERROR: $*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    die "needs root (it installs packages and starts system daemons); run it with sudo or as root."
fi

node_is_up() {
    local state
    state=$(timeout 10 sinfo --noheader --Node --format=%T 2>/dev/null | head -n1) || return 1
    # Busy counts as up: a second caller (make test while jobs run) must not wait.
    [[ "$state" == idle* || "$state" == mixed* || "$state" == alloc* || "$state" == completing* ]]
}

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if command -v sinfo >/dev/null && pid_alive "$state_root/run/slurmctld.pid" \
        && pid_alive "$state_root/run/slurmd.pid" && node_is_up; then
    log "already running: $(sinfo --noheader --Node --format='%N %T %c CPUs %m MB')"
    exit 0
fi

# --- packages ---------------------------------------------------------------
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the index only when apt cannot find the packages (fresh containers ship without one).
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/unidad-slurm-apt.log 2>&1; then
        apt-get update -qq
        apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/unidad-slurm-apt.log 2>&1 \
            || { tail -n 20 /tmp/unidad-slurm-apt.log >&2; die "apt-get install ${missing[*]} failed (log: /tmp/unidad-slurm-apt.log)"; }
    fi
fi

# --- slurm.conf ---------------------------------------------------------------
node_name=$(hostname -s)
cpus=$(nproc)
mem_available_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
# 90 % of what is free now: slurmd drains a node whose RealMemory exceeds the real one.
real_memory_mb=$(( mem_available_kb * 9 / 10 / 1024 ))
(( real_memory_mb >= 1024 )) || die "only ${real_memory_mb} MB of memory available; the smoke run needs at least 1 GB."

if [[ -e "$slurm_conf" ]] && ! grep -q "$marker" "$slurm_conf"; then
    die "$slurm_conf exists and was not written by this script; refusing to overwrite a real SLURM setup. Move it away or run the smoke check on another machine."
fi
mkdir -p /etc/slurm "$state_root"/{slurmctld,slurmd,log,run}
# A running controller keeps the config it was started with; rewrite only before a fresh start.
if ! pid_alive "$state_root/run/slurmctld.pid"; then
    sed -e "s|@NODE_NAME@|$node_name|g" -e "s|@CPUS@|$cpus|g" \
        -e "s|@REAL_MEMORY_MB@|$real_memory_mb|g" -e "s|@STATE_ROOT@|$state_root|g" \
        "$here/slurm.conf.in" >"$slurm_conf"
    log "wrote $slurm_conf: node $node_name, $cpus CPUs, ${real_memory_mb} MB, state in $state_root"
fi
# No cgroup.conf: slurmd 22.05 autodetects the cgroup version and, with
# proctrack/linuxproc and task/none, confines nothing with it.

# --- munge ------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge /etc/munge/munge.key
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || die "munged did not come up (see /var/log/munge/munged.log)"
fi

# --- slurmctld and slurmd -------------------------------------------------------
if ! pid_alive "$state_root/run/slurmctld.pid"; then
    log "starting slurmctld"
    /usr/sbin/slurmctld || { tail -n 20 "$state_root/log/slurmctld.log" >&2; die "slurmctld failed to start (log: $state_root/log/slurmctld.log)"; }
fi
if ! pid_alive "$state_root/run/slurmd.pid"; then
    log "starting slurmd"
    /usr/sbin/slurmd || { tail -n 20 "$state_root/log/slurmd.log" >&2; die "slurmd failed to start (log: $state_root/log/slurmd.log)"; }
fi

for attempt in $(seq 60); do
    node_is_up && break
    state=$(timeout 10 sinfo --noheader --Node --format=%T 2>/dev/null | head -n1 || true)
    # A node left down/drained by an earlier run does not come back by itself.
    if [[ "$state" == down* || "$state" == drain* ]] && (( attempt % 5 == 0 )); then
        scontrol update nodename="$node_name" state=resume >/dev/null 2>&1 || true
    fi
    sleep 1
done
if ! node_is_up; then
    tail -n 20 "$state_root/log/slurmctld.log" >&2 || true
    tail -n 20 "$state_root/log/slurmd.log" >&2 || true
    die "node $node_name did not become idle within 60 s (logs in $state_root/log)"
fi

log "SLURM up in $(( $(date +%s) - started_at )) s: $(sinfo --noheader --Node --format='%N %P %T %c CPUs %m MB')"
