#!/usr/bin/env bash
# A one-node SLURM cluster with munge on localhost, for testing `--cluster slurm` for real.
#
#   sudo bash scripts/slurm-local.sh start    # install (Debian packages) and start; idempotent
#   bash scripts/slurm-local.sh status        # sinfo of the running cluster
#   sudo bash scripts/slurm-local.sh stop     # stop slurmd, slurmctld and munged
#
# The node is this machine with all its cores and 90 % of its memory in one partition
# `local` (the default). Daemons run as root (SlurmUser=root): this is a test cluster for
# a CI container or a workstation, not a production setup. Its state lives in
# /var/lib/slurm-local; logs in /var/log/slurm-local.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm-local

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-local: '$1' needs root (sudo bash $0 $1)" >&2
        exit 1
    fi
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    echo "slurm-local: installing Debian's slurm-wlm and munge"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
}

write_config() {
    local host node mem_mb
    host=$(hostname -s)
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    # the node line as slurmd detects the hardware (sockets, cores, threads), memory capped at 90 %
    node=$(slurmd -C | head -1 | sed -E "s/NodeName=[^ ]+/NodeName=$host/; s/RealMemory=[0-9]+/RealMemory=$mem_mb/")
    mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS"
    cat > "$CONF_DIR/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node test cluster on localhost.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=30
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # no cgroup.conf: proctrack/linuxproc and task/none need no cgroups (containers often have none)
    rm -f "$CONF_DIR/cgroup.conf"
}

start_munge() {
    if pgrep -x munged >/dev/null; then return; fi
    if [ ! -s /etc/munge/munge.key ]; then
        if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null; else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    fi
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged
    else
        munged --force
    fi
}

start() {
    need_root start
    install
    write_config
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm-local: running ($(sinfo -h -o '%P %D nodes %c cpus %m MB %t' | head -1))"
            return
        fi
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm-local: the node did not come up; see $LOGS/" >&2
    sinfo >&2 || true
    tail -20 "$LOGS"/*.log >&2 || true
    exit 1
}

stop() {
    need_root stop
    scancel --user=root >/dev/null 2>&1 || true
    for daemon in slurmd slurmctld munged; do
        pkill -x "$daemon" 2>/dev/null || true
    done
    for _ in $(seq 20); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || break
        sleep 0.5
    done
    echo "slurm-local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
