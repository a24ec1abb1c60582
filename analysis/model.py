#!/usr/bin/env python3
"""Analytic model of each snapshot strategy: predicted image size, passes, completion, faults, memory.

Two uses:

  model.py RESULTS.csv [more.csv ...] --out PREDICTED.csv [--errors]
      one output row per input row: the row's case keys, the inputs the model took from it
      (model_rate_pages_s, model_save_bytes_s, ...) and `model_`-prefixed predictions; --errors
      prints the median relative error per case group as a markdown table.
  model.py --predict --mem 64G --rate 1GiB/s --bandwidth 10Gbit/s [--pattern P] [--populate F] ...
      a table for sizes and rates this machine cannot run, printed as a PREDICTION (never a measurement).

Standard library only. The formulas, their derivation and their limits are in analysis/README.md,
section "The model", and in the docstrings below.
"""
import argparse
import csv
import math
import re
import statistics
import sys

PAGE = 4096               # core/units.h kPageSize
RECORD_HEADER = 16        # core/image.h: page_index u64 | flags u32 | reserved u32
HEADER_FIXED = 32         # magic 8, version 4, page size 4, region pages 8, consistency 4, name len 2, reserved 2
TRAILER = 24              # magic 8, record count 8, checksum 8
PRECOPY_DEFAULTS = {"downtime_ms": 300, "max_passes": 30}   # strategies/precopy.cpp params()

KEY_COLUMNS = ["strategy", "tracker", "pattern", "writers", "region_bytes", "populate", "thp", "numa_node",
               "rate", "sink", "bandwidth_bytes_s", "warmup_s", "seed", "rep", "params", "status"]
INPUT_COLUMNS = ["model_rate_pages_s", "model_warmup_writes", "model_save_bytes_s", "model_save_from",
                 "model_verify_copy_s"]
PREDICTED_COLUMNS = ["model_image_ratio", "model_image_bytes", "model_passes", "model_converged",
                     "model_completion_s", "model_downtime_s", "model_duplicate_pages", "model_faults",
                     "model_fault_share", "model_extra_rss_bytes"]
MODEL_COLUMNS = INPUT_COLUMNS + PREDICTED_COLUMNS + ["model_note"]
STRATEGIES = ["stop-copy", "precopy", "uffd-wp", "fork-cow"]


class ModelError(Exception):
    """Bad input the user can fix; main() prints it as one line and exits 2."""


# ---------------------------------------------------------------------------------------------
# Access patterns: which share of the writes each page gets

class Pattern:
    """The write distribution of workloads/pattern_*.cpp as parts of equally likely pages.

    `parts` is a list of (pages, q): `pages` pages each hit by a given write with probability q
    (sum of pages*q = 1). Writes are independent draws, so after w writes a page of a part has been
    written with probability 1 - e^(-w q) (the Poisson limit of 1 - (1 - q)^w, exact to O(q) for
    the page counts here). `sequential` is not a draw: each writer sweeps its own slice in order.
    """

    def __init__(self, text, pages, writers=1):
        self.text, self.pages, self.sequential = text, int(pages), False
        name, *args = text.split(":")
        try:
            args = [float(a) for a in args]
        except ValueError:
            raise ModelError(f"pattern '{text}': arguments must be numbers")
        if name == "uniform" and not args:
            self.parts = [(self.pages, 1.0 / self.pages)]
        elif name == "hotset" and len(args) == 2:
            hot_fraction, share = args
            if not (0 < hot_fraction <= 1 and 0 < share <= 1):
                raise ModelError(f"pattern '{text}': HOT_FRACTION and WRITE_SHARE must be in (0, 1]")
            # pattern_hotset.cpp: hot = clamp(round(fraction * pages), 1, pages); all writes hot when hot = pages
            hot = min(max(int(round(hot_fraction * self.pages)), 1), self.pages)
            if hot == self.pages:
                self.parts = [(self.pages, 1.0 / self.pages)]
            else:
                self.parts = [(hot, share / hot), (self.pages - hot, (1.0 - share) / (self.pages - hot))]
        elif name == "zipf" and len(args) == 1:
            if not 0 < args[0] <= 5:
                raise ModelError(f"pattern '{text}': THETA must be in (0, 5]")
            self.parts = zipf_parts(self.pages, args[0])
        elif name == "sequential" and not args:
            self.sequential = True
            self.parts = [(self.pages, 1.0 / self.pages)]  # used only for the warm-up's untouched pages
        else:
            raise ModelError(f"pattern '{text}': expected uniform, hotset:H:S, zipf:THETA or sequential")

    def distinct(self, writes):
        """Expected distinct pages written by `writes` writes: sum over parts of n (1 - e^(-w q)).

        Uniform: N (1 - e^(-w/N)). Sequential: min(w, N) (a sweep never repeats a page before wrapping).
        """
        if writes <= 0:
            return 0.0
        if self.sequential:
            return float(min(writes, self.pages))
        return sum(n * -math.expm1(-writes * q) for n, q in self.parts)

    def split(self, writes):
        """distinct(writes) per part, as a list (for quantities that weigh parts differently)."""
        return [n * -math.expm1(-writes * q) if writes > 0 else 0.0 for n, q in self.parts]

    def untouched(self, writes):
        """Expected pages never written by `writes` writes (N - distinct)."""
        return self.pages - self.distinct(writes)


def zipf_parts(pages, theta, exact_ranks=2048, ratio=1.01):
    """Zipf(theta) over `pages` ranks (pattern_zipf.cpp draws rank k with probability k^-theta / H) as parts.

    The first `exact_ranks` ranks are parts of one page each; beyond, ranks are grouped in bins whose
    bounds grow by `ratio` (1 %), each bin one part with its mean probability (the integral of
    x^-theta over the bin): within a bin probabilities differ by about theta %, and 1 - e^(-wq) is
    concave, so the grouping overstates distinct pages by far less than 0.1 %. 64 GiB (16 M ranks)
    takes ~1000 parts instead of 16 M terms.
    """
    def integral(a, b):  # of x^-theta over [a, b]
        if abs(theta - 1.0) < 1e-12:
            return math.log(b / a)
        return (b ** (1.0 - theta) - a ** (1.0 - theta)) / (1.0 - theta)

    weights = []
    k = 1
    while k <= min(pages, exact_ranks):
        weights.append((1, k ** -theta))
        k += 1
    while k <= pages:
        end = min(pages + 1, max(k + 1, int(k * ratio)))
        weights.append((end - k, integral(k - 0.5, end - 0.5)))
        k = end
    total = sum(w for _, w in weights)
    return [(n, w / total / n) for n, w in weights]


# ---------------------------------------------------------------------------------------------
# Saving: how long a pass takes

class Saver:
    """Time to push a pass into the sink.

    With a cap (`--bandwidth`, core/sink_throttle.cpp: a token bucket on the image's bytes) a pass
    of `nbytes` image bytes takes nbytes / cap: every byte counts, record headers included, and a
    zero page costs its 16-byte record only. Without a cap the saver's own speed limits it, taken
    as `rate` region bytes per second whatever the page's content (reading a zero page to find it
    zero costs about as much as copying it).
    """

    def __init__(self, bytes_s, capped):
        if not bytes_s or bytes_s <= 0:
            raise ModelError("save bandwidth must be > 0")
        self.bytes_s, self.capped = float(bytes_s), capped

    def seconds(self, image_bytes, pages):
        return (image_bytes if self.capped else pages * PAGE) / self.bytes_s


def image_fixed_bytes(strategy):
    """Header (with the strategy name) and trailer of one image."""
    return HEADER_FIXED + len(strategy) + TRAILER


# ---------------------------------------------------------------------------------------------
# The strategies

def ratio(image_bytes, nonzero_pages):
    """image_ratio, or None (no such column) when no page is non-zero: the ratio is undefined."""
    return image_bytes / (nonzero_pages * PAGE) if nonzero_pages > 1e-9 else None


def zero_pages(pattern, populate, writes):
    """Pages still zero after `writes` writes: never populated (1 - populate of them, chosen
    independently of the pattern) and never written, (1 - populate) * untouched(writes)."""
    if pattern.sequential:
        # The sweep's cursors start at their slices' first pages, which the populate seed does not favour.
        return (1.0 - populate) * pattern.untouched(writes)
    return (1.0 - populate) * sum(n * math.exp(-writes * q) for n, q in pattern.parts)


def stop_copy(pages, pattern, populate, warmup_writes, saver, **_):
    """Writers paused throughout: one pass of everything; downtime = completion = its save time."""
    zero = zero_pages(pattern, populate, warmup_writes)
    nonzero = pages - zero
    image = image_fixed_bytes("stop-copy") + pages * RECORD_HEADER + nonzero * PAGE
    t = saver.seconds(image, pages)
    return {"model_image_bytes": image, "model_image_ratio": ratio(image, nonzero), "model_passes": 1,
            "model_completion_s": t, "model_downtime_s": t, "model_duplicate_pages": 0}


def precopy(pages, pattern, populate, rate, warmup_writes, saver, downtime_ms=300, max_passes=30, **_):
    """strategies/precopy.cpp, step by step, with expected page counts instead of measured ones.

    Pass 1 saves all N pages (nonzero ones as 4112-byte records, zero ones as 16-byte records) in
    T1. The tracker collects D1 = distinct(rate * T1), the pages written meanwhile. precopy's stop
    rule, exactly as in the code: with bw = 4096 * (pages of the pass just saved) / (its duration),
    stop iterating when D * 4096 / bw <= downtime budget (converged), else when passes + 1 >=
    max_passes (not converged), else save D (one more pass: T = D * 4112 / cap) and collect the next
    D = distinct(rate * T). The final stop-and-copy saves the last D with the writers paused, so
    downtime = its save time, passes = iterations + 1, duplicate pages = sum of every re-saved D
    (pass 1 saved every page once), and "tracker_faults" = pages first-written in each tracking
    interval, the last D included (the mprotect tracker takes one SIGSEGV for each; uffd-async's
    faults are resolved in the kernel and not counted, so row models report them for mprotect only). image ratio = image bytes / the
    non-zero pages at the final pause (writes turn never-populated pages non-zero meanwhile).
    """
    budget = downtime_ms / 1000.0
    writes = warmup_writes
    nonzero1 = pages - zero_pages(pattern, populate, writes)
    pass_bytes = pages * RECORD_HEADER + nonzero1 * PAGE
    image = image_fixed_bytes("precopy") + pass_bytes
    t_pass = saver.seconds(pass_bytes, pages)
    elapsed, passes = t_pass, 1
    bandwidth = max(pages * PAGE, PAGE) / t_pass    # precopy.cpp save_bandwidth()
    writes += rate * t_pass
    dirty = pattern.distinct(rate * t_pass)
    duplicates = faults = 0.0
    faults += dirty
    converged = False
    while True:
        if dirty * PAGE / bandwidth <= budget:
            converged = True
            break
        if passes + 1 >= max_passes:
            break
        pass_bytes = dirty * (RECORD_HEADER + PAGE)  # a written page is non-zero
        t_pass = saver.seconds(pass_bytes, dirty)
        image += pass_bytes
        duplicates += dirty
        bandwidth = max(dirty * PAGE, PAGE) / t_pass
        elapsed += t_pass
        passes += 1
        writes += rate * t_pass
        dirty = pattern.distinct(rate * t_pass)
        faults += dirty
    final_bytes = dirty * (RECORD_HEADER + PAGE)
    downtime = saver.seconds(final_bytes, dirty)
    image += final_bytes
    duplicates += dirty
    nonzero_end = pages - zero_pages(pattern, populate, writes)
    return {"model_image_bytes": image, "model_image_ratio": ratio(image, nonzero_end),
            "model_passes": passes + 1, "model_converged": int(converged),
            "model_completion_s": elapsed + downtime, "model_downtime_s": downtime,
            "model_duplicate_pages": duplicates, "tracker_faults": faults}


def uffd_wp(pages, pattern, populate, rate, warmup_writes, saver, **_):
    """Freeze at the start, then one sweep of the saver over the region in page order.

    Every page is saved once (image as stop-copy's, at the start's content). The sweep takes
    T = image bytes / cap; the saver reaches the page at relative position x at time x T. A page
    whose part gets writes at lam = rate * q per second faults when its first write comes before
    the saver: probability 1 - e^(-lam x T). Averaged over x in [0, 1] (hot, cold and zipf pages
    are scattered over the region independently of their position):
        faults = sum over parts of n * (1 - (1 - e^(-lam T)) / (lam T)).
    fault share = faults / (rate T), the share of the snapshot's writes that stall on a fault.
    Completion = T: the kernel work around it (registering, un-protecting, unregistering) is left out.
    """
    zero = zero_pages(pattern, populate, warmup_writes)
    nonzero = pages - zero
    image = image_fixed_bytes("uffd-wp") + pages * RECORD_HEADER + nonzero * PAGE
    t = saver.seconds(image, pages)
    faults = 0.0
    if rate > 0:
        if pattern.sequential:
            # Each writer sweeps its slice at rate/writers against a saver sweeping the region: the
            # writes ahead of the saver fault, about min(writes, N) * (1 - 1/2) on average.
            faults = 0.5 * min(rate * t, pages)
        else:
            for n, q in pattern.parts:
                x = rate * q * t
                faults += n * (1.0 - (-math.expm1(-x)) / x) if x > 1e-12 else n * x / 2.0
    writes = rate * t
    return {"model_image_bytes": image, "model_image_ratio": ratio(image, nonzero), "model_passes": 1,
            "model_completion_s": t, "model_duplicate_pages": 0, "model_faults": faults,
            "model_fault_share": faults / writes if writes > 0 else 0.0}


def fork_cow(pages, pattern, populate, rate, warmup_writes, saver, **_):
    """fork() at the start; the child saves the frozen view in T = image bytes / cap.

    A page is copied on write when it was populated at the fork (the parent writing a never-touched
    page maps a fresh page: nothing is shared, nothing copied) and written while the child lives:
        copy-on-write bytes = 4096 * sum over parts of n * (1 - (1-p) e^(-W0 q)) * (1 - e^(-rate q T)),
    with W0 the warm-up's writes. extra_rss also counts the child's page tables and stack, which
    this leaves out (about 2 KiB per MiB of region: 0.2 %).
    """
    zero = zero_pages(pattern, populate, warmup_writes)
    nonzero = pages - zero
    image = image_fixed_bytes("fork-cow") + pages * RECORD_HEADER + nonzero * PAGE
    t = saver.seconds(image, pages)
    if pattern.sequential:
        populated = 1.0 - zero_pages(pattern, populate, warmup_writes) / pages
        cow_pages = populated * pattern.distinct(rate * t)
    else:
        cow_pages = sum(n * (1.0 - (1.0 - populate) * math.exp(-warmup_writes * q)) * -math.expm1(-rate * q * t)
                        for n, q in pattern.parts)
    return {"model_image_bytes": image, "model_image_ratio": ratio(image, nonzero), "model_passes": 1,
            "model_completion_s": t, "model_duplicate_pages": 0, "model_extra_rss_bytes": cow_pages * PAGE}


def defined(model):
    """The model's predictions without the undefined ones (a ratio over no non-zero page)."""
    def wrapped(**kwargs):
        return {k: v for k, v in model(**kwargs).items() if v is not None}
    wrapped.__doc__, wrapped.__name__ = model.__doc__, model.__name__
    return wrapped


MODELS = {"stop-copy": defined(stop_copy), "precopy": defined(precopy), "uffd-wp": defined(uffd_wp),
          "fork-cow": defined(fork_cow)}


# ---------------------------------------------------------------------------------------------
# Inputs from a results row

def split_params(text):
    return {k.split(".", 1)[-1]: v for k, _, v in (item.partition("=") for item in text.split(";") if item)}


def num(row, column):
    try:
        return float(row[column])
    except (KeyError, TypeError, ValueError):
        return None


def running_rate(row):
    """The writers' measured rate while they ran (pages/s): writes_during / (completion - downtime).

    rate_during_pages_s divides by the whole snapshot, the writers' paused time (precopy's final
    stop-and-copy) included; the dirty sets grow only while the writers run. Falls back to
    rate_during_pages_s when the times do not allow it (stop-copy: the writers never ran).
    """
    writes, completion, downtime = num(row, "writes_during"), num(row, "completion_s"), num(row, "downtime_s")
    if writes and completion and downtime is not None and completion - downtime > 1e-3:
        return writes / (completion - downtime)
    return num(row, "rate_during_pages_s") or 0.0


def uncapped_save_rates(rows):
    """Region bytes per second of the uncapped stop-copy runs, per (region_bytes, populate, sink, thp):
    the saver's own speed where no cap limits it (the median over those runs). Their downtime is
    exactly their save (the writers are paused throughout, so their rate does not matter; the
    reference copy of --verify is excluded from it)."""
    groups = {}
    for r in rows:
        if r.get("strategy") == "stop-copy" and r.get("status") == "ok" and num(r, "bandwidth_bytes_s") == 0:
            t = num(r, "downtime_s") or num(r, "completion_s")
            if t and t > 0:
                key = (r["region_bytes"], r["populate"], r["sink"], r["thp"])
                groups.setdefault(key, []).append(float(r["region_bytes"]) / t)
    return {k: statistics.median(v) for k, v in groups.items()}


def verify_copy_times(rows):
    """Seconds of the harness's reference copy (--verify) per (region_bytes, populate, thp): the
    median over verified stop-copy runs of completion - downtime. The copy is taken inside the
    writers' pause but excluded from downtime_s, and it is all stop-copy does outside its pause, so
    that difference measures it. It is part of every verified run's completion_s, whatever the strategy."""
    groups = {}
    for r in rows:
        if r.get("strategy") == "stop-copy" and r.get("status") == "ok" and r.get("verified") in ("pass", "fail"):
            c, d = num(r, "completion_s"), num(r, "downtime_s")
            if c is not None and d is not None:
                groups.setdefault((r["region_bytes"], r["populate"], r["thp"]), []).append(max(c - d, 0.0))
    return {k: statistics.median(v) for k, v in groups.items()}


def row_inputs(row, save_rates, achieved_copy_s=None):
    """The model's inputs from one ok row: (kwargs for the strategy's model, where the save rate came from).

    achieved_copy_s (a diagnostic, not a prediction): take the save rate the run achieved instead,
    image_bytes / (completion_s - that many seconds of reference copy), as if the cap were that."""
    pages = int(float(row["region_bytes"])) // PAGE
    cap = num(row, "bandwidth_bytes_s") or 0.0
    completion, image = num(row, "completion_s"), num(row, "image_bytes")
    if achieved_copy_s is not None and completion and image and completion - achieved_copy_s > 0:
        saver, source = Saver(image / (completion - achieved_copy_s), True), "achieved"
    elif cap > 0:
        saver, source = Saver(cap, True), "cap"
    else:
        key = (row["region_bytes"], row["populate"], row["sink"], row["thp"])
        if key in save_rates:
            saver, source = Saver(save_rates[key], False), "stop-copy rows"
        else:
            if not completion or not image:
                raise ModelError("no save rate: no cap, no stop-copy row of this size, no image")
            saver, source = Saver(image / completion, False), "own image/completion"
    params = split_params(row.get("params", ""))
    kwargs = {"pages": pages, "pattern": Pattern(row["pattern"], pages, int(float(row["writers"]))),
              "populate": float(row["populate"]), "rate": running_rate(row),
              "warmup_writes": (num(row, "rate_before_pages_s") or 0.0) * (num(row, "warmup_s") or 0.0),
              "saver": saver,
              "downtime_ms": float(params.get("downtime_ms", PRECOPY_DEFAULTS["downtime_ms"])),
              "max_passes": int(params.get("max_passes", PRECOPY_DEFAULTS["max_passes"]))}
    return kwargs, source


def model_row(row, save_rates, verify_copies=None, achieved=False):
    """The output row for one input row: case keys, inputs used, predictions (empty where none apply).

    A verified row's completion also counts the reference copy (see verify_copy_times), when the
    rows given include verified stop-copy runs of the same size; model_verify_copy_s says how much.
    achieved=True models the run with the save rate it achieved (a diagnostic: see row_inputs)."""
    out = {c: row.get(c, "") for c in KEY_COLUMNS}
    out.update({c: "" for c in MODEL_COLUMNS})
    if row.get("status") != "ok":
        out["model_note"] = "not modelled: status " + row.get("status", "?")
        return out
    model = MODELS.get(row["strategy"])
    if model is None:
        out["model_note"] = "not modelled: " + row["strategy"] + " takes no snapshot"
        return out
    copy = (verify_copies or {}).get((row["region_bytes"], row["populate"], row["thp"]))
    if row.get("verified") not in ("pass", "fail"):
        copy = None
    try:
        kwargs, source = row_inputs(row, save_rates, (copy or 0.0) if achieved else None)
    except ModelError as e:
        out["model_note"] = "not modelled: " + str(e)
        return out
    out.update({"model_rate_pages_s": kwargs["rate"], "model_warmup_writes": kwargs["warmup_writes"],
                "model_save_bytes_s": kwargs["saver"].bytes_s, "model_save_from": source})
    predicted = model(**kwargs)
    tracker_faults = predicted.pop("tracker_faults", None)
    if tracker_faults is not None and row.get("tracker") == "mprotect":
        predicted["model_faults"] = tracker_faults  # uffd-async's faults never reach user space
    if copy is not None:
        predicted["model_completion_s"] += copy
        out["model_verify_copy_s"] = copy
    out.update(predicted)
    return out


def fmt_value(v):
    if isinstance(v, float):
        return "%.6g" % v
    return str(v)


def model_csv(paths, out_path, achieved=False):
    rows = []
    for path in paths:
        try:
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                missing = [c for c in ("strategy", "pattern", "region_bytes", "populate", "status")
                           if c not in (reader.fieldnames or [])]
                if missing:
                    raise ModelError(f"{path}: not a snapbench results CSV (missing {', '.join(missing)})")
                rows += list(reader)
        except OSError as e:
            raise ModelError(f"{path}: cannot open: {e.strerror}")
    save_rates, copies = uncapped_save_rates(rows), verify_copy_times(rows)
    out_rows = [model_row(r, save_rates, copies, achieved) for r in rows]
    if out_path:
        with open(out_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=KEY_COLUMNS + MODEL_COLUMNS)
            w.writeheader()
            for r in out_rows:
                w.writerow({k: fmt_value(v) for k, v in r.items()})
    return rows, out_rows


# ---------------------------------------------------------------------------------------------
# Where the model misses: a table of relative errors per case group

ERROR_METRICS = ["image_ratio", "completion_s", "downtime_s", "duplicate_pages", "faults", "extra_rss_bytes"]


def error_table(rows, predicted):
    """Markdown lines: per strategy/tracker, pattern and region size (runs with writers only), the
    median signed relative error (predicted - measured) / measured of each metric, how often the
    passes match, and the saver's achieved rate against the cap (image bytes over the time not spent
    on the reference copy), the model's main assumption."""
    groups = {}
    for r, p in zip(rows, predicted):
        if r.get("status") != "ok" or not p.get("model_save_from") or num(r, "rate_target_pages_s") == 0:
            continue
        key = (r["strategy"] + ("/" + r["tracker"] if r["tracker"] else ""), r["pattern"],
               int(float(r["region_bytes"])))
        g = groups.setdefault(key, {"n": 0, "passes": 0, "save": []})
        g["n"] += 1
        g["passes"] += int(float(r["passes"] or 0) == p.get("model_passes"))
        for m in ERROR_METRICS:
            meas, pred = num(r, m), p.get("model_" + m)
            if isinstance(pred, (int, float)) and meas:
                g.setdefault(m, []).append((pred - meas) / meas)
        cap, image, completion = num(r, "bandwidth_bytes_s"), num(r, "image_bytes"), num(r, "completion_s")
        copy = p.get("model_verify_copy_s") or 0.0
        if cap and image and completion and completion - copy > 0:
            g["save"].append(image / (completion - copy) / cap)
    cols = ["strategy/tracker", "pattern", "region", "runs", "passes match"] + ERROR_METRICS + ["save rate / cap"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for (label, pattern, size), g in sorted(groups.items(), key=lambda kv: (STRATEGIES.index(kv[0][0].split("/")[0]),
                                                                              kv[0])):
        cells = [label, pattern, fmt_size(size), str(g["n"]), f"{g['passes']}/{g['n']}"]
        cells += [f"{statistics.median(g[m]):+.0%}" if g.get(m) else "–" for m in ERROR_METRICS]
        cells.append(f"{statistics.median(g['save']):.2f}" if g["save"] else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Extrapolation: a predicted table from the command line

UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text):
    """64G, 64GiB, 512M, 4096 (K/M/G/T binary, as snapbench's --mem)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", text)
    if not m:
        raise ModelError(f"--mem: malformed size '{text}' (expected e.g. 64G, 512MiB)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def parse_rate(text, what):
    """Bytes/s: 1GiB/s, 200MiB/s, 1G/s (binary), 10Gbit/s, 1.25GB/s (decimal), 20000pages/s, 0."""
    t = text.strip()
    if t in ("0", ""):
        return 0.0
    m = re.fullmatch(r"([0-9.]+)\s*pages/s", t)
    if m:
        return float(m.group(1)) * PAGE
    m = re.fullmatch(r"([0-9.]+)\s*([kKmMgGtT]?)(bit|Bit|b|B|iB)?/s", t)
    if not m:
        raise ModelError(f"{what}: malformed rate '{text}' (expected e.g. 1GiB/s, 10Gbit/s, 20000pages/s)")
    value, prefix, unit = float(m.group(1)), m.group(2).lower(), m.group(3) or ""
    if unit in ("bit", "Bit", "b"):
        return value * 1000 ** " kmgt".index(prefix or " ") / 8.0
    if unit == "B" and prefix:
        return value * 1000 ** " kmgt".index(prefix)
    return value * UNITS[prefix]


def fmt_size(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} B"


def predict_table(mems, rates, bandwidth, pattern, populate, strategies, downtime_ms, max_passes, warmup_s):
    """Markdown lines: one row per (size, rate, strategy), every number a prediction."""
    cols = ["region", "write rate", "strategy", "image_ratio", "passes", "converged", "completion_s",
            "downtime_s", "duplicate_pages", "faults", "fault share", "extra_rss (MiB)"]
    lines = ["PREDICTION by analysis/model.py (not measured): " + f"pattern {pattern}, populate {populate:g}, "
             f"save bandwidth {bandwidth / (1 << 20):.4g} MiB/s, precopy downtime budget {downtime_ms:g} ms, "
             f"max_passes {max_passes}, writers' warm-up {warmup_s:g} s", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    saver = Saver(bandwidth, True)
    for mem in mems:
        pages = mem // PAGE
        pat = Pattern(pattern, pages)
        for rate in rates:
            r = rate / PAGE
            for s in strategies:
                p = MODELS[s](pages=pages, pattern=pat, populate=populate, rate=r, warmup_writes=r * warmup_s,
                              saver=saver, downtime_ms=downtime_ms, max_passes=max_passes)
                g = lambda k, f="%.3g": (f % p[k]) if k in p else "–"  # noqa: E731
                conv = {1: "yes", 0: "no"}.get(p.get("model_converged"), "–")
                mib = p.get("model_extra_rss_bytes", 0) / (1 << 20)
                extra = ("%.0f" if mib >= 1000 else "%.4g") % mib if "model_extra_rss_bytes" in p else "–"
                lines.append("| " + " | ".join([
                    fmt_size(mem), f"{rate / (1 << 20):g} MiB/s", s, g("model_image_ratio", "%.3f"),
                    g("model_passes", "%d"), conv, g("model_completion_s"), g("model_downtime_s"),
                    g("model_duplicate_pages", "%.0f"), g("model_faults", "%.0f"),
                    g("model_fault_share", "%.2f"), extra]) + " |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("csv", nargs="*", help="results CSV(s) to model, row by row")
    ap.add_argument("--out", help="PREDICTED.csv: case keys + model_* columns, one row per input row")
    ap.add_argument("--errors", action="store_true",
                    help="print a markdown table of the model's median relative errors per case group")
    ap.add_argument("--achieved-save-rate", action="store_true",
                    help="diagnostic, not a prediction: model each run with the save rate it achieved "
                         "(image_bytes / completion without the reference copy) instead of the cap")
    ap.add_argument("--predict", action="store_true", help="print a predicted table for the sizes and rates below")
    ap.add_argument("--mem", default="1G", help="--predict: region sizes, comma-separated (64G,1T)")
    ap.add_argument("--rate", default="200MiB/s", help="--predict: writers' total rates, comma-separated")
    ap.add_argument("--bandwidth", default="256MiB/s", help="--predict: save bandwidth (10Gbit/s, 1GiB/s)")
    ap.add_argument("--pattern", default="uniform", help="--predict: uniform, hotset:H:S, zipf:THETA, sequential")
    ap.add_argument("--populate", type=float, default=1.0, help="--predict: populated fraction (default 1)")
    ap.add_argument("--strategy", default=",".join(STRATEGIES), help="--predict: strategies, comma-separated")
    ap.add_argument("--downtime-ms", type=float, default=PRECOPY_DEFAULTS["downtime_ms"],
                    help="--predict: precopy's downtime budget (precopy.downtime_ms)")
    ap.add_argument("--max-passes", type=int, default=PRECOPY_DEFAULTS["max_passes"],
                    help="--predict: precopy.max_passes")
    ap.add_argument("--warmup", type=float, default=0.5, help="--predict: seconds of writes before the snapshot")
    args = ap.parse_args(argv)
    try:
        if args.predict == bool(args.csv):
            raise ModelError("give either RESULTS.csv --out PREDICTED.csv, or --predict (not both, not neither)")
        if args.csv:
            if not args.out and not args.errors:
                raise ModelError("--out: missing (where to write the predicted CSV)")
            rows, predicted = model_csv(args.csv, args.out, args.achieved_save_rate)
            if args.errors:
                print("\n".join(error_table(rows, predicted)))
            return 0
        mems = [parse_size(m) for m in args.mem.split(",")]
        rates = [parse_rate(r, "--rate") for r in args.rate.split(",")]
        bandwidth = parse_rate(args.bandwidth, "--bandwidth")
        if bandwidth <= 0:
            raise ModelError("--bandwidth: must be > 0 (the link or disk the image goes to)")
        if not 0 <= args.populate <= 1:
            raise ModelError("--populate: must be in [0, 1]")
        if args.max_passes < 2:
            raise ModelError("--max-passes: must be >= 2 (as precopy.max_passes)")
        strategies = args.strategy.split(",")
        for s in strategies:
            if s not in MODELS:
                raise ModelError(f"--strategy: unknown '{s}' (modelled: {', '.join(STRATEGIES)})")
        if any(m < PAGE for m in mems):
            raise ModelError("--mem: at least one page")
        print("\n".join(predict_table(mems, rates, bandwidth, args.pattern, args.populate, strategies,
                                      args.downtime_ms, args.max_passes, args.warmup)))
        return 0
    except ModelError as e:
        print(f"model.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
