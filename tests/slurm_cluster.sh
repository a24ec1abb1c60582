#!/usr/bin/env bash
# Integration test of scripts/slurm-matrix against a real one-node Slurm (Debian's slurmctld, slurmd,
# munge): brings up munged, slurmctld and slurmd on private ports with their own config, key, state
# and spool in a temporary directory, submits a small spec in 3 shards, and checks that the merged CSV
# holds exactly the runs of --dry-run, each once, all verified, equal to the same spec run locally;
# then that a resubmission runs only a missing shard and another spec is refused. Every daemon it
# started is stopped by its pid, on success, failure, or timeout.
# Usage: tests/slurm_cluster.sh SNAPBENCH_BINARY   (ctest runs it; needs root for slurmd and munged)
set -euo pipefail

bin=$(realpath "${1:?usage: slurm_cluster.sh SNAPBENCH_BINARY}")
repo=$(cd "$(dirname "$0")/.." && pwd)
budget_s=${SLURM_TEST_BUDGET_S:-200}  # below ctest's TIMEOUT, so the trap still cleans up

fail() {
  echo "slurm test: FAIL: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "needs root: slurmd runs jobs as their user and munged as user munge"
for tool in munged mungekey slurmctld slurmd sbatch squeue sinfo scancel setpriv; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || fail "$tool not installed (scripts/install-deps installs it)"
done
export PATH=$PATH:/usr/sbin
id munge >/dev/null 2>&1 || fail "no user munge (Debian's munge package creates it)"

tmp=$(mktemp -d /tmp/snapbench-slurm-XXXXXX)
chmod 755 "$tmp"  # munged (user munge) must reach its socket directory below
export SLURM_CONF=$tmp/slurm.conf
pids=()

# Stops what this test started: the jobs first (their processes carry our SLURM_CONF), then the
# daemons by pid, then any process left with our SLURM_CONF in its environment (job steps).
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null || true
  if [ ${#pids[@]} -gt 0 ]; then
    scancel --quiet --user=root 2>/dev/null || true
    for _ in $(seq 1 20); do squeue -h 2>/dev/null | grep -q . || break; sleep 0.5; done
  fi
  for ((k = ${#pids[@]} - 1; k >= 0; k--)); do kill "${pids[k]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$p" 2>/dev/null || true
  done
  for env in /proc/[0-9]*/environ; do
    if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "SLURM_CONF=$SLURM_CONF"; then
      p=${env#/proc/}
      p=${p%/environ}
      [ "$p" != "$$" ] && kill -9 "$p" 2>/dev/null || true
    fi
  done
  if [ "$rc" -ne 0 ]; then
    for log in "$tmp"/log/*.log "$tmp"/out/logs/*.out; do
      [ -f "$log" ] && { echo "--- $log (last lines)"; tail -n 15 "$log"; }
    done >&2
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "slurm test: interrupted or over its ${budget_s} s budget" >&2; exit 1' INT TERM
(sleep "$budget_s" && kill -TERM $$) 2>/dev/null &
watchdog=$!

# Two TCP ports nobody listens on (other tests and a system Slurm keep theirs).
port_free() {
  local hex
  hex=$(printf ':%04X ' "$1")
  ! cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '{print $2}' | grep -q "${hex% }$"
}
pick_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if port_free "$p" && port_free $((p + 1)); then
      echo "$p"
      return
    fi
  done
  fail "no free port pair found"
}
ctld_port=$(pick_port)
slurmd_port=$((ctld_port + 1))

# munged with its own key and socket, as user munge (setpriv execs it: $! is the daemon's pid).
mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log"
chown munge:munge "$tmp/munge"
chmod 755 "$tmp/munge"
mungekey --create --keyfile="$tmp/munge/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$tmp/munge/munge.key"
chmod 600 "$tmp/munge/munge.key"
setpriv --reuid=munge --regid=munge --clear-groups munged --foreground \
  --socket="$tmp/munge/munge.socket" --key-file="$tmp/munge/munge.key" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed" >"$tmp/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 40); do [ -S "$tmp/munge/munge.socket" ] && break; sleep 0.25; done
[ -S "$tmp/munge/munge.socket" ] || fail "munged did not create its socket ($(cat "$tmp/munge/munged.log" 2>/dev/null))"

host=$(hostname -s)
cat >"$SLURM_CONF" <<EOF
ClusterName=snapbenchtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=2
PlugStackConfig=$tmp/plugstack.conf
NodeName=snapnode NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=snap Nodes=snapnode Default=YES MaxTime=INFINITE State=UP
EOF
: >"$tmp/plugstack.conf"
slurmctld -D -i >"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N snapnode >"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  [ "$(sinfo -h -o %T 2>/dev/null)" = "idle" ] && break
  sleep 0.5
done
[ "$(sinfo -h -o %T 2>/dev/null)" = "idle" ] || fail "the node did not come up idle: $(sinfo 2>&1)"
echo "slurm test: one-node cluster up (slurmctld port $ctld_port)" >&2

# A small spec: 4 strategies x 2 rates x 2 repetitions, each run a fraction of a second.
spec=$tmp/spec.toml
cat >"$spec" <<'EOF'
name = "slurm-test"
reps = 2
[fixed]
mem = "4M"
writers = 1
warmup = 0.05
verify = true
tracker = "mprotect"
[axes]
strategy = ["stop-copy", "precopy", "uffd-wp", "fork-cow"]
rate = ["0", "20MiB/s"]
EOF
expected=$("$bin" matrix "$spec" --out "$tmp/dry" --dry-run 2>/dev/null | tail -n 1)
[[ "$expected" =~ ^to\ run:\ ([0-9]+)\ of ]] || fail "unexpected dry-run: $expected"
expected=${BASH_REMATCH[1]}

out=$tmp/out
"$repo/scripts/slurm-matrix" "$spec" "$out" -n 3 --snapbench "$bin" --dry-run >"$tmp/dry.txt" 2>&1 ||
  fail "--dry-run failed: $(cat "$tmp/dry.txt")"
grep -q "would submit: sbatch .*--array 1,2,3" "$tmp/dry.txt" || fail "--dry-run: $(cat "$tmp/dry.txt")"
[ ! -e "$out" ] || fail "--dry-run created $out"

"$repo/scripts/slurm-matrix" "$spec" "$out" -n 3 --snapbench "$bin" --time 5:00 --wait ||
  fail "slurm-matrix --wait did not end with every run merged"

# Runs of the local matrix, for the comparison.
"$bin" matrix "$spec" --out "$tmp/local" -q || fail "local run of the spec failed"

# Checks with Python's csv module: every run once, all ok and verified, the same runs as locally.
check_csv() {
  python3 - "$1" "$2" "$3" "$host" <<'EOF'
import csv, sys
merged, local, expected, host = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
KEY = ["strategy", "tracker", "workload", "pattern", "writers", "region_bytes", "populate", "thp", "numa_node", "rate",
       "sink", "bandwidth_bytes_s", "warmup_s", "params", "seed", "rep"]
def runs(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, [tuple(r.get(k, "") for k in KEY) for r in rows]
rows, keys = runs(merged)
_, local_keys = runs(local)
problems = []
if len(rows) != expected:
    problems.append(f"{len(rows)} rows, --dry-run lists {expected} runs")
if len(set(keys)) != len(keys):
    problems.append(f"{len(keys) - len(set(keys))} runs appear more than once")
bad = [r for r in rows if r["status"] != "ok" or r["verified"] != "pass"]
if bad:
    problems.append(f"{len(bad)} rows not ok+verified, e.g. {bad[0]['strategy']}: {bad[0]['status']} "
                    f"{bad[0]['verified']} {bad[0]['reason']}")
if set(keys) != set(local_keys):
    problems.append(f"runs differ from the local run: {len(set(keys) - set(local_keys))} only merged, "
                    f"{len(set(local_keys) - set(keys))} only local")
if {r["host"] for r in rows} != {host} and {r["host"].split(".")[0] for r in rows} != {host}:
    problems.append(f"host column {sorted({r['host'] for r in rows})}, expected {host}")
if problems:
    sys.exit("; ".join(problems))
EOF
}
check_csv "$out/results.csv" "$tmp/local/results.csv" "$expected" || fail "merged results: see above"
for i in 1 2 3; do
  [ -s "$out/shard-$i/results.csv" ] && grep -q '"spec_hash"' "$out/shard-$i/meta.json" || fail "shard $i: no results or sidecar"
done
if "$repo/analysis/find_python.sh" >/dev/null 2>&1; then
  [ -s "$out/figures/summary.md" ] || fail "the merge job drew no figures ($(cat "$out/logs/merge.out"))"
fi
echo "slurm test: $expected runs in 3 shards merged, each once, all verified, same runs as locally" >&2

# Resubmission: with shard 2 lost, only shard 2 is submitted again, and the merge is whole again.
rm -rf "$out/shard-2"
"$repo/scripts/slurm-matrix" "$spec" "$out" --snapbench "$bin" --wait 2>"$tmp/resubmit.txt" ||
  fail "resubmission: $(cat "$tmp/resubmit.txt")"
grep -q "shards 2 of 3 as job array" "$tmp/resubmit.txt" || fail "resubmission did not submit shard 2 alone: $(cat "$tmp/resubmit.txt")"
check_csv "$out/results.csv" "$tmp/local/results.csv" "$expected" || fail "merged results after resubmission"
# Another spec into the same OUTDIR is refused before anything is submitted.
sed 's/reps = 2/reps = 3/' "$spec" >"$tmp/other.toml"
if "$repo/scripts/slurm-matrix" "$tmp/other.toml" "$out" --snapbench "$bin" 2>"$tmp/other.txt"; then
  fail "another spec was accepted into the same OUTDIR"
fi
grep -q "another spec" "$tmp/other.txt" || fail "another spec: $(cat "$tmp/other.txt")"
echo "slurm test: resubmission ran only the missing shard; another spec refused" >&2
