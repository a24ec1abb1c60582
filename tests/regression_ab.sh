#!/usr/bin/env bash
# The A/B gate's own checks (issue 22): on a tiny matrix, the same binary as base and as this tree
# passes (exit 0); a binary whose runs really are slower (every save through a 48 MiB/s sink cap,
# its rows labelled as the uncapped case) fails with exit 1 naming stop-copy; a base that does not
# build, and a base revision that is not in the clone, fail with exit 2 and say so.
# Usage: regression_ab.sh SNAPBENCH_BINARY
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export REGRESSION_SPEC=$root/tests/fixtures/ab_tiny.toml
fail() { echo "FAIL: $*"; exit 1; }

# 1. Unchanged: the same binary on both sides.
set +e
REGRESSION_OUT=$tmp/same "$root/scripts/regression-check" --base-bin "$bin" --current-bin "$bin" > "$tmp/same.txt" 2>&1
rc=$?
set -e
[ "$rc" = 0 ] || { cat "$tmp/same.txt"; fail "the same binary on both sides exited $rc, expected 0"; }
grep -q "interleaved (60 runs" "$tmp/same.txt" || { cat "$tmp/same.txt"; fail "expected 60 interleaved runs"; }
[ "$(tail -n +2 "$tmp/same/base/results.csv" | wc -l)" = 30 ] && [ "$(tail -n +2 "$tmp/same/head/results.csv" | wc -l)" = 30 ] ||
  fail "each side should have 30 rows"
echo "ok: unchanged A/B exits 0"

# 2. A real slowdown: the wrapper runs the real binary on the spec with a sink cap, then relabels its
#    rows as the uncapped case (bandwidth is part of a case's identity).
cat > "$tmp/slow.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
# matrix SPEC --out DIR --run K:R -q (anything else, e.g. the gate's --dry-run, goes to the binary as it is)
[ "\${5:-}" = --run ] || exec "$bin" "\$@"
spec=\$2 out=\$4 run=\$6
shadow=\$out.shadow
sed 's/^bandwidth = .*/bandwidth = "48MiB\/s"/' "\$spec" > "$tmp/slow.toml"
set +e
"$bin" matrix "$tmp/slow.toml" --out "\$shadow" --run "\$run" -q
rc=\$?
set -e
python3 - "\$shadow/results.csv" "\$out/results.csv" <<'PY'
import csv, os, sys
with open(sys.argv[1], newline="") as f:
    r = csv.DictReader(f)
    fields, rows = r.fieldnames, list(r)
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
new = not os.path.exists(sys.argv[2])
with open(sys.argv[2], "a", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
    if new:
        w.writeheader()
    for row in rows:
        row["bandwidth_bytes_s"] = "0"
        w.writerow(row)
PY
rm -f "\$shadow/results.csv"
exit \$rc
SH
chmod +x "$tmp/slow.sh"
set +e
REGRESSION_OUT=$tmp/slow "$root/scripts/regression-check" --base-bin "$bin" --current-bin "$tmp/slow.sh" > "$tmp/slow.txt" 2>&1
rc=$?
set -e
cat "$tmp/slow.txt"
[ "$rc" = 1 ] || fail "the capped binary exited $rc, expected 1"
grep -q "REGRESSED" "$tmp/slow.txt" && grep "REGRESSED" "$tmp/slow.txt" | grep -q "stop-copy" ||
  fail "no REGRESSED line naming stop-copy"
echo "ok: a real slowdown exits 1 naming stop-copy"

# 3. A base that does not build.
mkdir -p "$tmp/broken"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(broken CXX)\nadd_executable(snapbench broken.cpp)\n' > "$tmp/broken/CMakeLists.txt"
printf 'int main() { return this_does_not_compile; }\n' > "$tmp/broken/broken.cpp"
set +e
REGRESSION_OUT=$tmp/broken-out REGRESSION_BASE_BUILD=$tmp/broken-build REGRESSION_BASE_SRC=$tmp/broken \
  "$root/scripts/regression-check" --current-bin "$bin" > "$tmp/broken.txt" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || { cat "$tmp/broken.txt"; fail "a base that does not build exited $rc, expected 2"; }
grep -q "does not build" "$tmp/broken.txt" || { cat "$tmp/broken.txt"; fail "no 'does not build' message"; }
echo "ok: a base that does not build exits 2: $(grep 'does not build' "$tmp/broken.txt")"

# 4. A base revision this clone does not have.
set +e
REGRESSION_OUT=$tmp/norev REGRESSION_BASE_BUILD=$tmp/norev-build REGRESSION_BASE=0123456789abcdef0123456789abcdef01234567 \
  "$root/scripts/regression-check" --current-bin "$bin" > "$tmp/norev.txt" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] && grep -q "is not in this clone" "$tmp/norev.txt" || { cat "$tmp/norev.txt"; fail "a missing base revision exited $rc"; }
echo "ok: a missing base revision exits 2"
echo "PASS: A/B gate"
