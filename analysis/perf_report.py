#!/usr/bin/env python3
"""The table of scripts/perf-report: each strategy figure beside the limit measured in the same run.

Reads OUT/micro.json, OUT/idle/results.csv, OUT/harness.csv and OUT/sweep/results.csv (written by
scripts/perf-report) and prints the markdown report (results/perf/README.md says what each figure
means). The other arguments are the provenance printed in its first lines:

  analysis/perf_report.py OUT STARTED LOAD_START LOAD_END QUICK SHA KERNEL SWEEP_REPS

Needs only the Python standard library.
"""
import json
import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_kit import keyed, median, num, read_csv  # noqa: E402

if len(sys.argv) != 9:
    sys.exit("usage: perf_report.py OUT STARTED LOAD_START LOAD_END QUICK SHA KERNEL SWEEP_REPS")
out, started, load_start, load_end, quick, sha, kernel, sweep_reps = sys.argv[1:9]
GiB = float(1 << 30)


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return "%.*g" % (digits, v)
    return "%.*g" % (max(digits, len("%d" % abs(v))), v)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ---- micro-benchmarks: name without the /manual_time, /real_time suffixes -> entry
micro, micro_errors = {}, {}
try:
    with open(os.path.join(out, "micro.json")) as f:
        doc = json.load(f)
    context = doc.get("context", {})
    for b in doc.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration":
            continue
        name = b["name"].replace("/manual_time", "").replace("/real_time", "")
        if b.get("error_occurred"):
            micro_errors[name] = b.get("error_message", "error")
        else:
            micro[name] = b
except (OSError, ValueError) as e:
    context = {}
    print("perf-report: cannot read micro.json: %s" % e, file=sys.stderr)


def m(name, field):
    b = micro.get(name)
    return None if b is None or field not in b else float(b[field])


def us(name, field):
    v = m(name, field)
    return None if v is None else v / 1000.0


memcpy_bps = m("BM_MemcpyPagesToRing", "bytes_per_second")
save_null_bps = m("BM_SavePages/null", "bytes_per_second")
wp_arm_ms_gib = m("BM_WriteProtectArm", "ms_per_GiB")
fork_ms_gib = m("BM_ForkPause/MiB:1024/thp:0", "ms_per_GiB")
bare2 = m("BM_BareWriterLoop/MiB:2048/threads:2", "items_per_second")
first_read_ns = m("BM_ForkChildFirstRead/MiB:256", "first_ns_per_page")
second_read_ns = m("BM_ForkChildFirstRead/MiB:256", "second_ns_per_page")

# ---- harness CSVs


harness = read_csv(os.path.join(out, "idle", "results.csv")) + read_csv(os.path.join(out, "harness.csv"))
sweep = read_csv(os.path.join(out, "sweep", "results.csv"))
problems = [r for r in harness + sweep if r.get("status") != "ok"]


def rows_of(rows, strategy, rate):
    return [r for r in rows if r["strategy"] == strategy and r["rate"] == rate and r.get("status") == "ok"]


def note(row, key):
    """A numeric key of a row's notes, or None."""
    try:
        return float(keyed(row.get("notes", ""))[key])
    except (KeyError, ValueError):
        return None


def med(rows, col):
    return median([v for v in (num(r, col) for r in rows) if v is not None])


def freeze_limit_s(strategy, region_bytes):
    """The micro figure that bounds a strategy's freeze primitive, for this region size."""
    per_gib = {"uffd-wp": wp_arm_ms_gib, "precopy": wp_arm_ms_gib, "fork-cow": fork_ms_gib}.get(strategy)
    return None if per_gib is None else per_gib / 1000.0 * region_bytes / GiB




def measured_strategies():
    """The strategies of the idle matrix, in its axis order (scripts/perf-report fills the axis from the
    registry, so no strategy is named here); without its spec, those of the CSVs that wrote an image,
    in row order."""
    try:
        with open(os.path.join(out, "idle.toml"), "rb") as f:
            return list(tomllib.load(f)["axes"]["strategy"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return list(dict.fromkeys(r["strategy"] for r in harness if (num(r, "image_bytes") or 0) > 0))


strategies = measured_strategies()
doc = []
doc.append("# snapbench performance report\n")
doc.append("Measured %s, git %s, kernel %s, %s micro-benchmarks; load average %s at the start, %s at the end."
           % (started, sha, kernel, "quick (min_time 0.05 s)" if quick == "1" else "default", load_start, load_end))
doc.append("Every ratio is a figure divided by the limit measured in this same run (1.0 = at the limit). "
           "GB/s = 10^9 bytes per second. See results/perf/README.md for what each figure means.\n")

doc.append("## Limits (micro-benchmarks, %s)\n" % "micro.json")
limit_rows = [
    ("page copy: memcpy 4 KiB pages into a ring", fmt(None if memcpy_bps is None else memcpy_bps / 1e9), "GB/s", "BM_MemcpyPagesToRing"),
]
for idle in (0, 100, 500):
    name = "BM_MemcpyAfterIdle/idle_ms:%d/iterations:5" % idle
    v = m(name, "bytes_per_second")
    limit_rows.append(("page copy of 256 MiB untouched for %d ms before" % idle, fmt(None if v is None else v / 1e9), "GB/s", name))
for sink in ("null", "memory", "file", "exec"):
    v = m("BM_SavePages/" + sink, "bytes_per_second")
    limit_rows.append(("ImageWriter::save_pages -> %s sink" % sink, fmt(None if v is None else v / 1e9), "GB/s", "BM_SavePages/" + sink))
limit_rows.append(("write-protect 256 MiB (arm)", fmt(wp_arm_ms_gib), "ms/GiB", "BM_WriteProtectArm"))
for chunk in (1, 16, 512):
    limit_rows.append(("un-protect in chunks of %d pages" % chunk, fmt(m("BM_Unprotect/chunk_pages:%d" % chunk, "ns_per_page")), "ns/page",
                       "BM_Unprotect/chunk_pages:%d" % chunk))
for svc in ("poll", "read", "busy_poll", "poll_copy_aside", "read_copy_aside", "busy_poll_copy_aside",
            "sigbus_copy_aside"):
    name = "BM_WpFaultRoundTrip/" + svc
    limit_rows.append(("sync WP fault round trip, %s: mean / p50 / p99" % svc,
                       "%s / %s / %s" % (fmt(us(name, "ns_per_fault")), fmt(us(name, "p50_ns")), fmt(us(name, "p99_ns"))), "µs", name))
limit_rows.append(("async WP first write", fmt(m("BM_AsyncWpFirstWrite", "ns_per_write")), "ns/write", "BM_AsyncWpFirstWrite"))
for permille, label in ((0, "0 %"), (10, "1 %"), (500, "50 %")):
    name = "BM_PagemapScanRearm/dirty_permille:%d" % permille
    limit_rows.append(("PAGEMAP_SCAN collect+rearm, %s dirty" % label, fmt(m(name, "ms_per_GiB")), "ms/GiB", name))
limit_rows.append(("mprotect + SIGSEGV first write", fmt(m("BM_MprotectFirstWrite", "ns_per_write")), "ns/write", "BM_MprotectFirstWrite"))
for mib in (256, 1024):
    for thp in (0, 1):
        name = "BM_ForkPause/MiB:%d/thp:%d" % (mib, thp)
        limit_rows.append(("fork() pause, %d MiB, THP %s" % (mib, "on" if thp else "off"), fmt(m(name, "ms_per_GiB")), "ms/GiB", name))
for mib in (1024, 8192):
    name = "BM_ReadAfterPopulate/MiB:%d/iterations:2" % mib
    limit_rows.append(("first / second read of each page of a just-populated %d GiB region" % (mib // 1024),
                       "%s / %s" % (fmt(m(name, "first_ns_per_page")), fmt(m(name, "second_ns_per_page"))), "ns/page", name))
limit_rows.append(("fork() child, first / second read of each page, 256 MiB",
                   "%s / %s" % (fmt(first_read_ns), fmt(second_read_ns)), "ns/page", "BM_ForkChildFirstRead/MiB:256"))
for threads in (1, 2):
    name = "BM_BareWriterLoop/MiB:2048/threads:%d" % threads
    v = m(name, "items_per_second")
    limit_rows.append(("bare writer loop, %d thread(s), 2 GiB uniform" % threads, fmt(None if v is None else v / 1e6), "M pages/s", name))
doc.append(table(["figure", "value", "unit", "benchmark"], limit_rows))
if micro_errors:
    doc.append("\nSkipped micro-benchmarks: " + "; ".join("%s: %s" % kv for kv in sorted(micro_errors.items())))

doc.append("\n## Strategies, idle writers (2 writers, --rate 0, populate 1, null sink), median of the repetitions\n")
rows = []
for s in strategies:
    rs = rows_of(harness, s, "0")
    if not rs:
        rows.append([s] + ["n/a"] * 11)
        continue
    region = med(rs, "region_bytes")
    completion = med(rs, "completion_s")
    gbps = None if not completion else region / completion / 1e9
    freeze = med(rs, "freeze_s")
    limit = freeze_limit_s(s, region)
    downtime = med(rs, "downtime_s")
    # stop-copy's downtime is the whole save: its limit is saving the region into the null sink.
    downtime_limit = region / save_null_bps if s == "stop-copy" and save_null_bps else None
    rows.append([s, len(rs), fmt(region / GiB), completion, gbps, ratio(gbps, None if memcpy_bps is None else memcpy_bps / 1e9),
                 ratio(gbps, None if save_null_bps is None else save_null_bps / 1e9), downtime, ratio(downtime, downtime_limit),
                 freeze, ratio(freeze, limit), med(rs, "image_ratio")])
doc.append(table(["strategy", "reps", "GiB", "completion_s", "GB/s", "/ memcpy", "/ save->null", "downtime_s",
                  "downtime / save time", "freeze_s", "freeze / limit", "image_ratio"], rows))
doc.append("\nfreeze limit: write-protect arm (precopy uffd-async, uffd-wp) or fork() pause with THP off (fork-cow), "
           "per GiB from the micro-benchmarks times the region size; stop-copy's downtime limit is region / save->null.")

doc.append("\n### uffd-wp: its kernel work beside the copy\n")
stop_completion = med(rows_of(harness, "stop-copy", "0"), "completion_s")
rows = []
for r in rows_of(harness, "uffd-wp", "0"):
    completion, freeze = num(r, "completion_s"), num(r, "freeze_s")
    parts = [note(r, "setup_s"), freeze, note(r, "unprotect_s"), note(r, "release_s")]
    rest = None if completion is None or None in parts else completion - sum(parts)
    rows.append([r["rep"], completion, parts[0], freeze, parts[2], parts[3], rest, stop_completion, ratio(rest, stop_completion)])
doc.append(table(["rep", "completion_s", "setup_s", "freeze_s (arm)", "unprotect_s", "release_s (unregister)",
                  "the rest: copying", "stop-copy completion_s (median)", "rest / stop-copy"], rows))
doc.append("\nuffd-wp's saver copies like stop-copy's; what it adds is kernel work on every page-table entry: arming "
           "the write protection (freeze), un-protecting each chunk after its copy, and unregistering at the end. "
           "`rest / stop-copy` near 1 means the copy itself runs at stop-copy's speed and the gap to it is that "
           "kernel work.")

doc.append("\n### fork-cow's child save vs. what the child must pay\n")
rs = rows_of(harness, "fork-cow", "0")
rows = []
for r in rs:
    region = num(r, "region_bytes")
    child = note(r, "child_save_s")
    pages = None if region is None else region / 4096.0
    copy_s = None if not save_null_bps or region is None else region / save_null_bps
    touch_s = None if first_read_ns is None or pages is None else pages * first_read_ns / 1e9
    limit = None if copy_s is None or touch_s is None else copy_s + touch_s
    rows.append([r["rep"], child, copy_s, touch_s, limit, ratio(child, limit)])
doc.append(table(["rep", "child_save_s", "save->null time", "first reads (pages x first read)", "limit", "child / limit"], rows))
doc.append("\nfork() leaves the Accessed bit clear in the child's page-table entries, so the child's first read of "
           "every page makes the page walker set it (BM_ForkChildFirstRead: first vs. second read). The child's save "
           "cannot beat the save into the null sink plus that per-page cost; a parent saving the same memory "
           "(stop-copy) does not pay it.")

doc.append("\n## uffd-wp under 256 MiB/s uniform writes (2 writers, 2 GiB): writer stalls vs. the fault round trip\n")
service_of = {"spin": "busy_poll_copy_aside", "poll": "poll_copy_aside", "read": "read_copy_aside",
              "sigbus": "sigbus_copy_aside"}
rows = []
for r in rows_of(harness, "uffd-wp", "256MiB/s"):
    wait = keyed(r.get("params", "")).get("uffd-wp.fault_wait", "")
    svc = service_of.get(wait)
    name = "BM_WpFaultRoundTrip/" + svc if svc else None
    micro_p50 = us(name, "p50_ns") if name else None
    micro_p99 = us(name, "p99_ns") if name else None
    p99, mx = num(r, "write_p99_us"), num(r, "write_max_us")
    faults, writes = num(r, "faults"), num(r, "writes_during")
    rows.append([r["rep"], wait or "?", num(r, "write_p50_us"), p99, num(r, "write_p999_us"), mx,
                 num(r, "write_before_p99_us"),
                 ratio(faults, writes), num(r, "completion_s"), svc or "n/a", micro_p50, micro_p99,
                 ratio(p99, micro_p50), ratio(mx, micro_p99)])
doc.append(table(["rep", "fault_wait", "write_p50_us", "write_p99_us", "write_p999_us", "write_max_us",
                  "before_p99_us", "fault share",
                  "completion_s", "micro round trip", "micro p50_us", "micro p99_us", "p99 / micro p50",
                  "max / micro p99"], rows))
doc.append("\nA write that faults should cost about one round trip (micro p50); the writers' p99 sees the faults only "
           "when the fault share (faults / writes during the snapshot) is above 1 %. The micro variant is the one "
           "matching the run's fault_wait (spin: busy_poll, poll, read; with copy-aside, as the fault thread saves "
           "the page first; sigbus: the writer's own SIGBUS handler); fault_wait=saver has no micro equivalent.")

doc.append("\n## Writer throughput: `none --rate max` (2 writers, 2 GiB uniform) vs. the bare writer loop\n")
rs = rows_of(harness, "none", "max")
during = med(rs, "rate_during_pages_s")
before = med(rs, "rate_before_pages_s")
doc.append(table(["reps", "rate_during_pages_s", "rate_before_pages_s", "bare loop 2 threads pages/s", "during / bare"],
                 [[len(rs), during, before, bare2, ratio(during, bare2)]]))

doc.append("\n## Scaling sweep, idle writers (median of %s repetitions per size)\n" % sweep_reps)
rows = []
for s in strategies:
    sizes = sorted({num(r, "region_bytes") for r in sweep if r["strategy"] == s and r.get("status") == "ok"})
    per_gib_all = []
    srows = []
    for region in sizes:
        rs = [r for r in sweep if r["strategy"] == s and r.get("status") == "ok" and num(r, "region_bytes") == region]
        completion, freeze = med(rs, "completion_s"), med(rs, "freeze_s")
        per_gib = None if completion is None else completion / (region / GiB)
        if per_gib is not None and region >= GiB:
            per_gib_all.append(per_gib)
        limit = freeze_limit_s(s, region)
        srows.append([s, len(rs), fmt(region / GiB), completion, per_gib, None if not completion else region / completion / 1e9,
                      med(rs, "downtime_s"), freeze, None if freeze is None else freeze * 1000.0 / (region / GiB),
                      None if limit is None else limit * 1000.0 / (region / GiB), ratio(freeze, limit)])
    flat = median(per_gib_all)
    for row in srows:
        row.insert(5, ratio(row[4], flat))
    rows += srows
doc.append(table(["strategy", "reps", "GiB", "completion_s", "s per GiB", "/ median s per GiB (>= 1 GiB)", "GB/s",
                  "downtime_s", "freeze_s", "freeze ms/GiB", "limit ms/GiB", "freeze / limit"], rows))
def first_read_excess_ms_per_gib(mib):
    name = "BM_ReadAfterPopulate/MiB:%d/iterations:2" % mib
    a, b = m(name, "first_ns_per_page"), m(name, "second_ns_per_page")
    return None if a is None or b is None else (a - b) * (GiB / 4096.0) / 1e6


ex1, ex8 = first_read_excess_ms_per_gib(1024), first_read_excess_ms_per_gib(8192)
doc.append("\nThe machine's part: the first read of a region just populated costs %s ms per GiB more than a second "
           "read at 1 GiB and %s ms per GiB more at 8 GiB (BM_ReadAfterPopulate); a snapshot's saver makes that "
           "first read, so on this machine a bigger region costs more per GiB before any strategy runs."
           % (fmt(ex1), fmt(ex8)))
doc.append("\nFlatness: each size's completion time per GiB against the strategy's median per GiB over the sizes of "
           "1 GiB and more (the target is within 15 %). Below 1 GiB fixed costs (thread start, registration, the "
           "first sink write) weigh more per GiB and are shown but not part of the median.")

if problems:
    doc.append("\n## Runs that did not succeed\n")
    doc.append(table(["strategy", "region_bytes", "rate", "rep", "status", "reason"],
                     [[r.get("strategy"), r.get("region_bytes"), r.get("rate"), r.get("rep"), r.get("status"), r.get("reason")] for r in problems]))
print("\n".join(doc))
