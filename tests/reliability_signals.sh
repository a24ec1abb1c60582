#!/usr/bin/env bash
# Process-level reliability (issue 25): a SIGTERM stops a run within a second even while the region is
# being filled, or while an exec sink never reads, leaving no process and no row; a second signal
# exits at once and kills the sink's command; two `matrix --resume` at once on one directory never
# double a run; a SIGTERM stops the qemu workload and its QEMU. Usage: reliability_signals.sh SNAPBENCH_BINARY
set -uo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
# alive NEEDLE: a live process whose command line has NEEDLE, given a killed one a moment to go.
alive() {
  for _ in $(seq 1 30); do
    pgrep -f -- "$1" >/dev/null || return 1
    sleep 0.1
  done
  return 0
}
# stop_after DELAY SIGNAL PID: sends SIGNAL after DELAY s, waits for PID; sets rc and took (s after the signal).
stop_after() {
  sleep "$1"
  kill -"$2" "$3"
  local t0; t0=$(now)
  wait "$3"; rc=$?
  took=$(echo "$(now) - $t0" | bc)
}

# 1. SIGTERM while the region is being filled (2 GiB at ~11 us a page is seconds: the signal lands in it).
"$bin" run --mem 2G --populate 1 --warmup 0 -q --out "$tmp/fill.csv" > "$tmp/fill.txt" 2>&1 &
stop_after 0.5 TERM $!
cat "$tmp/fill.txt"
echo "fill: rc=$rc, exited ${took}s after SIGTERM"
[ "$rc" = 143 ] || fail "a SIGTERM during the fill exited $rc, expected 143"
(( $(echo "$took < 1.0" | bc) )) || fail "the run took ${took}s to stop after SIGTERM (limit 1 s)"
[ "$(grep -c . "$tmp/fill.csv" 2>/dev/null || echo 0)" -le 1 ] || fail "a stopped run wrote a row"

# 2. SIGTERM while an exec sink never reads.
"$bin" run --mem 16M --warmup 0 -q --sink 'exec:sleep 971.5' > "$tmp/exec.txt" 2>&1 &
stop_after 1 TERM $!
echo "exec sink: rc=$rc, exited ${took}s after SIGTERM"
[ "$rc" = 143 ] || { cat "$tmp/exec.txt"; fail "exited $rc, expected 143"; }
(( $(echo "$took < 1.0" | bc) )) || fail "the run took ${took}s to stop after SIGTERM (limit 1 s)"
alive 'sleep 971.5' && fail "the exec sink's command was left running"

# 3. A first Ctrl-C finishes the run in progress; a second exits at once and kills the sink's command.
"$bin" run --mem 16M --warmup 0 -q --sink 'exec:sleep 972.5' > "$tmp/int.txt" 2>&1 &
pid=$!
sleep 1
kill -INT $pid
stop_after 0.3 INT $pid
echo "second SIGINT: rc=$rc, exited ${took}s after it"
[ "$rc" = 130 ] || { cat "$tmp/int.txt"; fail "exited $rc, expected 130"; }
alive 'sleep 972.5' && fail "the exec sink's command outlived a second signal"

# 4. Two `matrix --resume` at once on one (empty) directory: one runs, the other says who holds it.
cat > "$tmp/spec.toml" <<'TOML'
[fixed]
strategy = "none"
"none.duration_ms" = 200
mem = "4M"
warmup = 0
writers = 1
[axes]
seed = [1, 2, 3, 4, 5, 6]
TOML
"$bin" matrix "$tmp/spec.toml" --out "$tmp/m" --resume -q > "$tmp/a.txt" 2>&1 &
a=$!
"$bin" matrix "$tmp/spec.toml" --out "$tmp/m" --resume -q > "$tmp/b.txt" 2>&1 &
b=$!
wait $a; rc_a=$?
wait $b; rc_b=$?
cat "$tmp/a.txt" "$tmp/b.txt"
rows=$(($(grep -c . "$tmp/m/results.csv") - 1))
echo "two --resume at once: exits $rc_a and $rc_b, $rows rows"
[ "$rows" = 6 ] || fail "$rows rows for 6 runs"
[ "$rc_a$rc_b" = 02 ] || [ "$rc_a$rc_b" = 20 ] || fail "expected one exit 0 and one exit 2"
grep -q "is in use by pid" "$tmp/a.txt" "$tmp/b.txt" || fail "the refused one did not say who holds the directory"
"$bin" matrix "$tmp/spec.toml" --out "$tmp/m" --resume -q > "$tmp/c.txt" 2>&1 || fail "a later --resume failed"
[ $(($(grep -c . "$tmp/m/results.csv") - 1)) = 6 ] || fail "a later --resume added rows to a complete matrix"
# 5. SIGTERM while the qemu workload runs (QEMU under KVM or TCG): the run stops within a second and
#    its QEMU (a child of snapbench) goes with it. Skipped (said so) without QEMU.
if command -v qemu-system-x86_64 >/dev/null; then
  "$bin" run --workload qemu --mem 64M --writers 1 --warmup 60 -q --out "$tmp/qemu.csv" > "$tmp/qemu.txt" 2>&1 &
  pid=$!
  qemu=""
  for _ in $(seq 1 300); do
    qemu=$(pgrep -P "$pid" -f qemu-system | head -1)
    [ -n "$qemu" ] && break
    sleep 0.1
  done
  [ -n "$qemu" ] || { cat "$tmp/qemu.txt"; fail "the qemu workload started no QEMU within 30 s"; }
  stop_after 3 TERM $pid
  cat "$tmp/qemu.txt"
  echo "qemu workload: rc=$rc, exited ${took}s after SIGTERM"
  [ "$rc" = 143 ] || fail "a SIGTERM during the qemu workload exited $rc, expected 143"
  (( $(echo "$took < 1.0" | bc) )) || fail "the qemu run took ${took}s to stop after SIGTERM (limit 1 s)"
  for _ in $(seq 1 30); do kill -0 "$qemu" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$qemu" 2>/dev/null && fail "QEMU (pid $qemu) outlived the run"
  [ "$(grep -c . "$tmp/qemu.csv" 2>/dev/null || echo 0)" -le 1 ] || fail "a stopped qemu run wrote a row"
else
  echo "qemu workload: skipped (no qemu-system-x86_64 on PATH)"
fi
echo "PASS"
