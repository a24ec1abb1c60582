#!/usr/bin/env bash
# The CI gate itself (issue 13's "done when"): scripts/regression-check --current must pass the committed
# baseline against itself and fail (exit 1, completion_s REGRESSED) a copy of it with every completion_s
# doubled and stop-copy's downtime_s doubled. Usage: regression_gate.sh SNAPBENCH_BINARY
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
baseline=$root/results/baseline/ci.csv

# Every completion_s x2; stop-copy's downtime_s (its whole save) x2 (csv module: quoted cells stay intact).
python3 - "$baseline" "$tmp/doubled.csv" <<'PY'
import csv, sys
with open(sys.argv[1], newline="") as f:
    r = csv.DictReader(f)
    fields, rows = r.fieldnames, list(r)
for row in rows:
    row["completion_s"] = repr(float(row["completion_s"]) * 2)
    if row["strategy"] == "stop-copy":
        row["downtime_s"] = repr(float(row["downtime_s"]) * 2)
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
PY

set +e
SNAPBENCH_BIN=$bin "$root/scripts/regression-check" --current "$baseline" > "$tmp/same.txt" 2>&1
same=$?
SNAPBENCH_BIN=$bin "$root/scripts/regression-check" --current "$tmp/doubled.csv" > "$tmp/doubled.txt" 2>&1
doubled=$?
set -e
cat "$tmp/doubled.txt"
[ "$same" = 0 ] || { cat "$tmp/same.txt"; echo "FAIL: the baseline against itself exited $same, expected 0"; exit 1; }
[ "$doubled" = 1 ] || { echo "FAIL: the doubled copy exited $doubled, expected 1"; exit 1; }
grep -q "REGRESSED" "$tmp/doubled.txt" && grep -q "FAIL (completion_s" "$tmp/doubled.txt" ||
  { echo "FAIL: no completion_s REGRESSED in the doubled copy's check"; exit 1; }
echo "PASS: baseline vs itself exit 0, doubled completion_s exit 1"
