#!/usr/bin/env python3
"""Generates analysis/fixtures/results.csv: a realistic results CSV for testing plot.py.

The values come from a small model of each strategy (a 256 MiB region, 2 uniform writers, a null
sink capped at 200 MiB/s) so that the columns agree with one another (image_bytes follows
pages_saved, image_ratio follows image_bytes, precopy's dirty set grows with the write rate and
stops converging at the highest rate). They are plausible, not measured: never quote them.

Usage: make_fixture.py [OUT.csv]   (default: fixtures/results.csv beside this script)
"""
import csv
import math
import os
import random
import sys

# The exact header of the real CSV, in order (harness/csv.cpp, `snapbench columns`, schema_version 7).
COLUMNS = [
    "schema_version", "strategy", "tracker", "workload", "accel", "pattern", "writers", "region_bytes", "populate",
    "thp", "numa_node", "rate", "rate_target_pages_s", "rate_before_pages_s", "rate_during_pages_s", "sink",
    "bandwidth_bytes_s", "warmup_s", "fsync", "verify", "seed", "rep", "status", "reason", "params", "image_bytes",
    "nonzero_rss_bytes", "pages_saved", "unique_pages", "duplicate_pages", "zero_pages", "image_ratio",
    "completion_s", "downtime_s", "freeze_s", "calib_bytes_s", "passes", "converged", "faults", "writes_during",
    "write_p50_us", "write_p99_us", "write_p999_us", "write_max_us", "write_before_p99_us",
    "extra_rss_bytes", "verified", "notes", "host", "kernel", "cpu_model",
    # Schema 6: the restore phase's columns, empty in these snapshot-only rows.
    "restore", "restore_access", "restore_cache", "restore_window_s", "restore_index_s", "resume_s", "ready_s",
    "resident_s", "restore_faults", "restore_read_bytes", "access_p50_us", "access_p99_us", "access_p999_us",
    "access_max_us", "restore_ops_s", "resident_ops_s", "restore_extra_bytes", "restore_verified",
]
MACHINE = {"host": "fixture-host", "kernel": "6.18.0-fixture", "cpu_model": "Fixture CPU @ 2.00GHz"}

PAGE = 4096
RECORD_BYTES = 16 + PAGE            # page_index u64 | flags u32 | reserved u32 | data
TRAILER_BYTES = 24
REGION_BYTES = 256 << 20
REGION_PAGES = REGION_BYTES // PAGE
WRITERS = 2
BANDWIDTH = 200 << 20               # bytes/s: makes a full pass take ~1.3 s so writes matter
SAVE_PAGES_S = BANDWIDTH / PAGE
RATES_MIB_S = [16, 64, 256]
REPS = 2
DOWNTIME_BUDGET_S = 0.300           # precopy's default downtime_ms
MAX_PASSES = 30

# (strategy, tracker, params) for every row kind; soft-dirty is the unsupported one on this kernel.
STRATEGIES = [
    ("none", "", "none.duration_ms=1000"),
    ("stop-copy", "", "stop-copy.chunk_pages=256"),
    ("precopy", "uffd-async", "precopy.downtime_ms=300;precopy.max_passes=30"),
    ("precopy", "mprotect", "precopy.downtime_ms=300;precopy.max_passes=30"),
    ("uffd-wp", "", "uffd-wp.chunk_pages=64;uffd-wp.fault_wait=spin;uffd-wp.ring_pages=1024"),
    ("fork-cow", "", ""),
]


def header_bytes(strategy):
    return 8 + 4 + 4 + 8 + 4 + 2 + 2 + len(strategy)


def image_bytes(strategy, records):
    return header_bytes(strategy) + records * RECORD_BYTES + TRAILER_BYTES


def distinct_pages(writes):
    """Expected distinct pages touched by `writes` uniform random writes over the region."""
    return REGION_PAGES * (1.0 - math.exp(-writes / REGION_PAGES))


def precopy_model(write_pages_s, rng):
    """Iterative precopy: pass 1 saves everything, later passes re-save what was dirtied meanwhile."""
    to_save = REGION_PAGES
    saved = 0
    passes = 0
    elapsed = 0.0
    converged = False
    while True:
        passes += 1
        t = to_save / SAVE_PAGES_S * rng.uniform(0.98, 1.04)
        if to_save / SAVE_PAGES_S <= DOWNTIME_BUDGET_S and passes > 1:
            converged = True
            break
        if passes == MAX_PASSES:
            break
        saved += to_save
        elapsed += t
        to_save = int(distinct_pages(write_pages_s * t))
    # The final stop-and-copy saves the remaining dirty set with the writers paused.
    downtime = to_save / SAVE_PAGES_S * rng.uniform(0.98, 1.05) + 0.0004
    saved += to_save
    return saved, passes, converged, elapsed + downtime, downtime


def row_for(strategy, tracker, params, rate_mib, rep, rng):
    target = rate_mib * (1 << 20) / PAGE
    r = {c: "" for c in COLUMNS}
    r.update({
        "schema_version": 7, "strategy": strategy, "tracker": tracker, "workload": "threads", "accel": "", "pattern": "uniform",
        "writers": WRITERS, "region_bytes": REGION_BYTES, "populate": 1, "thp": "off", "numa_node": -1,
        "rate": f"{rate_mib}MiB/s", "rate_target_pages_s": f"{target:.9g}",
        "rate_before_pages_s": f"{target * rng.uniform(0.995, 1.0):.9g}",
        "sink": "null", "bandwidth_bytes_s": BANDWIDTH, "warmup_s": 0.5, "fsync": 0, "verify": 1, "seed": 1, "rep": rep,
        "status": "ok", "params": params, "notes": "", **MACHINE,
    })
    base_p50, base_p99 = 0.35 * rng.uniform(0.95, 1.1), 1.6 * rng.uniform(0.9, 1.2)
    load = rate_mib / 256.0           # 0..1: how hard the writers push
    records, unique, extra_rss, faults, freeze = REGION_PAGES, REGION_PAGES, 0, 0, 0.0
    passes, converged = 1, 1
    if strategy == "none":
        completion = 1.0 + rng.uniform(0.0002, 0.0008)
        downtime, records, unique, passes = 0.0, 0, 0, 0
        p50, p99, p999, pmax = base_p50, base_p99, base_p99 * 3, 40 + 60 * rng.random()
        during = target
    elif strategy == "stop-copy":
        completion = REGION_PAGES / SAVE_PAGES_S * rng.uniform(0.99, 1.03)
        downtime = completion + 0.0002
        # Writers are parked for the whole save: the few writes counted straddle the pause.
        p50, p99, p999, pmax = base_p50, base_p99 * 2, downtime * 0.4e6, downtime * 1e6
        during = target * 0.002
    elif strategy == "precopy":
        saved, passes, conv, completion, downtime = precopy_model(target, rng)
        records, converged = saved, int(conv)
        trap_us = 1.2 if tracker == "uffd-async" else 7.5   # in-kernel async WP vs SIGSEGV round trip
        p50 = base_p50 * (1.05 if tracker == "uffd-async" else 1.15)
        p99 = base_p99 + trap_us * (0.6 + load)
        p999 = p99 * 2.5 + 4 * load
        pmax = downtime * 1e6 + 50   # a write that straddles the final pause
        faults = 0 if tracker == "uffd-async" else saved - REGION_PAGES
        freeze = 0.0003 if tracker == "uffd-async" else 0.0011
        during = target * (0.97 if tracker == "uffd-async" else 0.9)
    elif strategy == "uffd-wp":
        completion = REGION_PAGES / SAVE_PAGES_S * rng.uniform(1.0, 1.05) + 0.003
        freeze = 0.0031 * rng.uniform(0.95, 1.1)
        downtime = freeze + 0.0002
        # Each page written before the saver reaches it faults once (about half the distinct writes).
        faults = int(distinct_pages(target * completion) * 0.5)
        extra_rss = min(faults, 1024) * PAGE
        p50 = base_p50 * 1.1
        p99 = 18 + 45 * load * rng.uniform(0.9, 1.15)
        p999 = p99 * 1.9
        pmax = 900 + 2500 * load * rng.random()
        during = target * (0.98 - 0.08 * load)
    else:  # fork-cow
        freeze = 0.0029 * rng.uniform(0.95, 1.1)      # fork() of a populated 256 MiB
        downtime = freeze + 0.0003
        completion = REGION_PAGES / SAVE_PAGES_S * rng.uniform(1.0, 1.03) + downtime
        faults = int(distinct_pages(target * completion))   # each page written once gets a CoW copy
        extra_rss = faults * PAGE
        p50 = base_p50 * 1.05
        p99 = base_p99 + 2.5 + 3 * load
        p999 = p99 * 3
        pmax = 300 + 400 * rng.random()
        during = target * 0.96
    r.update({
        "rate_during_pages_s": f"{during:.9g}",
        "image_bytes": image_bytes(strategy, records) if records else 0,
        "nonzero_rss_bytes": REGION_BYTES, "pages_saved": records, "unique_pages": unique,
        "duplicate_pages": records - unique, "zero_pages": 0,
        "completion_s": f"{completion:.9g}", "downtime_s": f"{downtime:.9g}", "freeze_s": f"{freeze:.9g}",
        "passes": passes, "converged": converged, "faults": faults,
        "writes_during": int(during * completion),
        "write_p50_us": f"{p50:.9g}", "write_p99_us": f"{p99:.9g}", "write_p999_us": f"{p999:.9g}",
        "write_max_us": f"{pmax:.9g}", "write_before_p99_us": f"{base_p99:.9g}",
        "extra_rss_bytes": extra_rss, "verified": "pass" if records else "off",
        # The same-run calibration (a constant here: drawing it would change every later value).
        "calib_bytes_s": 5e9 if records else 0,
    })
    r["image_ratio"] = f"{r['image_bytes'] / REGION_BYTES:.9g}"
    if strategy == "uffd-wp":
        r["notes"] = "wp_unpopulated=1"
    return r


def unsupported_row():
    r = {c: "" for c in COLUMNS}
    for c in ("image_bytes", "nonzero_rss_bytes", "pages_saved", "unique_pages", "duplicate_pages",
              "zero_pages", "image_ratio", "completion_s", "downtime_s", "freeze_s", "calib_bytes_s", "passes", "faults",
              "writes_during", "write_p50_us", "write_p99_us", "write_p999_us", "write_max_us",
              "write_before_p99_us", "extra_rss_bytes", "rate_before_pages_s", "rate_during_pages_s"):
        r[c] = 0
    r.update({
        "schema_version": 7, "strategy": "precopy", "tracker": "soft-dirty", "workload": "threads", "accel": "", "pattern": "uniform",
        "writers": WRITERS, "region_bytes": REGION_BYTES, "populate": 1, "thp": "off", "numa_node": -1,
        "rate": "64MiB/s", "rate_target_pages_s": 16384, "sink": "null", "bandwidth_bytes_s": BANDWIDTH,
        "warmup_s": 0.5, "fsync": 0, "verify": 1, "seed": 1, "rep": 0, "status": "unsupported",
        "reason": "soft-dirty: kernel lacks CONFIG_MEM_SOFT_DIRTY (pagemap bit 55 never set)",
        "params": "precopy.downtime_ms=300;precopy.max_passes=30", "converged": 1, "verified": "off",
        **MACHINE,
    })
    return r


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                              "fixtures", "results.csv")
    rng = random.Random(20240601)   # fixed: regenerating gives the same file
    rows = []
    for rate in RATES_MIB_S:
        for strategy, tracker, params in STRATEGIES:
            for rep in range(REPS):
                rows.append(row_for(strategy, tracker, params, rate, rep, rng))
    rows.append(unsupported_row())
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(out)


if __name__ == "__main__":
    main()
