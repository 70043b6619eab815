#!/usr/bin/env bash
# A real one-node Slurm cluster (Debian's slurm-wlm and munge) and a throw-away PostgreSQL, both started
# here, then the smoke sweep submitted as a Slurm job array of 4 workers (`flowprior sweep submit
# --slurm`), waited for, and checked: every stage run finished once, the report complete.
#   bash scripts/test-slurm.sh        (just test-slurm; needs root to install and start the daemons)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '== test-slurm: %s\n' "$*" >&2; }
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "test-slurm: install slurm-wlm and munge first (as root)" >&2; exit 1; }
  log "installing slurm-wlm and munge"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }
fi
cargo build --locked
FP="$PWD/${CARGO_TARGET_DIR:-target}/debug/flowprior"

W=$(mktemp -d /tmp/flowprior-slurm.XXXXXX)
chmod 755 "$W"
NODE=$(hostname -s)
CPUS=$(nproc)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port); D_PORT=$(free_port)
cleanup() {
  scontrol shutdown >/dev/null 2>&1 || true
  sleep 1
  [ -f "$W/slurmd.pid" ] && kill "$(cat "$W/slurmd.pid")" 2>/dev/null || true
  [ -f "$W/slurmctld.pid" ] && kill "$(cat "$W/slurmctld.pid")" 2>/dev/null || true
  pkill -f "munged --key-file=$W/" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# munge: a key of its own, a socket in the work folder.
mkdir -p "$W/munge"
dd if=/dev/urandom bs=1 count=1024 of="$W/munge/munge.key" 2>/dev/null
chmod 700 "$W/munge"; chmod 400 "$W/munge/munge.key"
if id munge >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then chown -R munge: "$W/munge"; MUNGE_USER=munge; else MUNGE_USER=$(id -un); fi
runuser -u "$MUNGE_USER" -- /usr/sbin/munged --key-file="$W/munge/munge.key" --socket="$W/munge/munge.socket" \
  --pid-file="$W/munge/munged.pid" --log-file="$W/munge/munged.log" --seed-file="$W/munge/munged.seed" --force

mkdir -p "$W/state" "$W/spool"
cat > "$W/slurm.conf" <<CONF
ClusterName=flowprior-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$W/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/slurmctld.log
SlurmdLogFile=$W/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF="$W/slurm.conf"
log "starting slurmctld and slurmd (node $NODE, $CPUS CPUs)"
/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF" -N "$NODE"
for _ in $(seq 60); do
  sinfo -h -o '%T' 2>/dev/null | grep -Eq 'idle|mixed' && break
  sleep 1
done
sinfo -h -o '%T' | grep -Eq 'idle|mixed' || { echo "test-slurm: the node did not come up" >&2; tail -20 "$W/slurmctld.log" "$W/slurmd.log" >&2; exit 1; }
log "cluster up: $(sinfo -h -o '%P %D %T')"

run_checks() {
  set -euo pipefail
  export FLOWPRIOR_DB="${FLOWPRIOR_TEST_PG%/*}/slurm_smoke"
  psql "$FLOWPRIOR_TEST_PG" -qc "CREATE DATABASE slurm_smoke"
  export FLOWPRIOR_ARTIFACTS="$W/artifacts"
  cd "$W"
  # --wait: sbatch returns when every task of the array has ended.
  out=$("$FP" --data-dir "$OLDPWD/data" sweep submit "$OLDPWD/sweeps/smoke.toml" --slurm --workers 4 -- --wait)
  echo "$out"
  job=$(sed -n 's/^submitted: Slurm job \([0-9]*\),.*/\1/p' <<< "$out")
  [ -n "$job" ] || { echo "test-slurm: no job id in the output" >&2; exit 1; }
  tasks=$(ls slurm/smoke-"$job"_*.out | wc -l)
  [ "$tasks" = 4 ] || { echo "test-slurm: $tasks task logs, expected 4" >&2; ls -R slurm >&2; exit 1; }
  cat slurm/smoke-"$job"_*.out
  "$FP" sweep status smoke
  "$FP" sweep status smoke | grep -q "12 finished, 0 running, 0 failed"
  n=$("$FP" sql "SELECT COUNT(*) FROM runs WHERE status = 'finished' AND attempts = 1" --format csv | sed -n 2p)
  [ "$n" = 12 ] || { echo "test-slurm: $n runs finished at their first attempt, expected 12" >&2; exit 1; }
  pids=$("$FP" sql "SELECT COUNT(DISTINCT pid) FROM runs" --format csv | sed -n 2p)
  "$FP" --data-dir "$OLDPWD/data" report smoke --out "$W/reports" --check
  log "ok: job $job, 4 array tasks, 12 stage runs each finished once by $pids worker processes, report complete"
}
export FP W
export -f run_checks log
bash scripts/with-postgres.sh bash -c run_checks
