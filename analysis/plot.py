#!/usr/bin/env python3
"""Paper-style figures and a markdown summary from snapbench results CSVs.

Usage: plot.py RESULTS.csv [more.csv ...] --out DIR [--rate-for-cdf RATE] [--no-model] [--host HOST]

Only rows with status=ok are plotted; unsupported and failed rows are counted in DIR/summary.md.
One line per strategy/tracker; x = target write rate in MiB/s; y = median over repetitions with
min-max error bars; a dashed line of the same colour is model.py's prediction (--no-model: none).
Rows are grouped by the workload parameters that vary (region size, writers, pattern, populate, THP,
NUMA node, sink, bandwidth, warm-up) and by the machine that ran them (host, kernel, CPU model:
results merged from several machines are never pooled): one set of figures per group. --host keeps
one machine's rows.
Needs Debian's python3-matplotlib and numpy only (see find_python.sh); no pandas.
"""
import argparse
import csv
import os
import sys
import textwrap
from collections import Counter, OrderedDict, defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or over ssh
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PAGE_BYTES = 4096  # core/units.h kPageSize: rate_target_pages_s counts 4 KiB pages
MIB = 1 << 20
MAX_RATE = -1.0    # rate_target_pages_s of a `--rate max` run (writers unpaced)
DEFAULT_WORKLOAD = "threads"  # workloads/workload.h kDefaultWorkload

# Columns this script reads; a CSV without one of them is from another schema and is rejected.
REQUIRED_COLUMNS = [
    "strategy", "tracker", "pattern", "writers", "region_bytes", "populate", "thp", "numa_node",
    "rate", "rate_target_pages_s", "sink", "bandwidth_bytes_s", "warmup_s", "rep", "status", "reason",
    "params", "image_bytes", "image_ratio", "completion_s", "downtime_s", "duplicate_pages",
    "converged", "write_p50_us", "write_p99_us", "write_p999_us", "write_max_us", "extra_rss_bytes",
    "verified",
]
NUMERIC_COLUMNS = [
    "image_bytes", "image_ratio", "completion_s", "downtime_s", "duplicate_pages", "write_p50_us",
    "write_p99_us", "write_p999_us", "write_max_us", "extra_rss_bytes", "rate_target_pages_s",
]

# The parameters that define a workload, in title order; rows differing in any of them are not
# comparable and get separate figures. A CSV without the `workload` column (schema 1) was written by
# the threads workload, the only one there was.
WORKLOAD_COLUMNS = ["workload", "region_bytes", "writers", "pattern", "populate", "thp", "numa_node", "sink",
                    "bandwidth_bytes_s", "warmup_s"]
# The machine that ran a row (schema_version 4); an older CSV without them reads them as "".
MACHINE_COLUMNS = ["host", "kernel", "cpu_model"]
WORKLOAD_COLUMNS += MACHINE_COLUMNS

# One colour and marker per strategy/tracker in every figure of an invocation, handed out in the order
# the series first appear in the rows (a matrix's strategy order), so no strategy's name is written
# here: a new one gets the next style. Okabe-Ito colours first (colour-blind safe).
PALETTE = [("#000000", "s"), ("#0072B2", "o"), ("#56B4E9", "v"), ("#009E73", "^"), ("#D55E00", "D"),
           ("#E69F00", "P"), ("#CC79A7", "*"), ("#7f7f7f", "x"), ("#8c564b", "h"), ("#bcbd22", "<"),
           ("#17becf", ">"), ("#9467bd", "p"), ("#F0E442", "d")]
VARIANT_LINESTYLES = ["-", "--", "-.", ":"]

ERRORBAR_NOTE = "markers: median over repetitions; error bars: min-max"
MODEL_NOTE = "dashed: model.py's prediction from each run's measured write rate (median over repetitions)"
MODEL_LINE = {"ls": (0, (3, 2)), "lw": 1.1, "alpha": 0.85}  # thinner than the measured lines


class InputError(Exception):
    """Bad input the user can fix (missing file, other schema, nothing to plot)."""


# ---------------------------------------------------------------------------------------------
# Loading

def load_rows(paths):
    """Reads every CSV; returns (rows, per-file row counts). Numbers of ok rows become floats."""
    rows, counts = [], OrderedDict()
    for path in paths:
        try:
            f = open(path, newline="")
        except OSError as e:
            raise InputError(f"{path}: cannot open: {e.strerror}")
        with f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
                raise InputError(f"{path}: not a snapbench results CSV (missing columns: {shown})")
            n = 0
            for line_no, row in enumerate(reader, start=2):
                n += 1
                row.setdefault("workload", DEFAULT_WORKLOAD)
                row["_where"] = f"{path}:{line_no}"
                for c in MACHINE_COLUMNS:
                    row.setdefault(c, "")
                if row["status"] == "ok":
                    for c in NUMERIC_COLUMNS:
                        try:
                            row[c] = float(row[c])
                        except (TypeError, ValueError):
                            raise InputError(f"{row['_where']}: column {c}: not a number: {row[c]!r}")
                rows.append(row)
            counts[path] = n
    return rows, counts


def strategy_label(row):
    return row["strategy"] + ("/" + row["tracker"] if row["tracker"] else "")


def parse_params(text):
    out = {}
    for item in filter(None, text.split(";")):
        k, _, v = item.partition("=")
        out[k.split(".", 1)[-1]] = v  # drop the unit prefix: the label already names the unit
    return out


def assign_series(rows):
    """Sets row['_series'] = strategy/tracker, plus the differing parameters when one strategy was
    run with several parameter sets (a sweep), so those runs are not pooled into one median."""
    by_label = defaultdict(set)
    for r in rows:
        by_label[strategy_label(r)].add(r["params"])
    for r in rows:
        label = strategy_label(r)
        variants = by_label[label]
        r["_base"] = label
        if len(variants) < 2:
            r["_series"] = label
            continue
        parsed = [parse_params(p) for p in variants]
        keys = sorted({k for p in parsed for k in p if len({q.get(k) for q in parsed}) > 1})
        mine = parse_params(r["params"])
        r["_series"] = label + " [" + ",".join(f"{k}={mine.get(k, '-')}" for k in keys) + "]"


class Styles:
    """Colour, marker and line style per series, fixed for one invocation (all its figures)."""

    def __init__(self, rows):
        first_seen = {}
        for r in rows:
            first_seen.setdefault(r["_base"], len(first_seen))
        self.base_style = {b: PALETTE[i % len(PALETTE)] for b, i in first_seen.items()}
        variants = defaultdict(list)
        for s in sorted({(r["_base"], r["_series"]) for r in rows}):
            variants[s[0]].append(s[1])
        self.series_style = {}
        for base, names in variants.items():
            colour, marker = self.base_style[base]
            for i, name in enumerate(names):
                self.series_style[name] = (colour, marker, VARIANT_LINESTYLES[i % len(VARIANT_LINESTYLES)])
        self.order = sorted(self.series_style, key=lambda s: (first_seen[s.split(" [")[0]], s))

    def __call__(self, series):
        return self.series_style[series]


# ---------------------------------------------------------------------------------------------
# Formatting

def fmt_bytes(n):
    n = float(n)
    for unit, size in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_num(v, digits=3):
    """`digits` significant digits, without an exponent for the everyday range (0.001 .. 10^7)."""
    if v == 0:
        return "0"
    if 10 ** digits <= abs(v) < 1e7:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def rate_key(row):
    """Hashable, sortable rate: -1 for max, else the target in MiB/s."""
    pages_s = row["rate_target_pages_s"]
    if pages_s < 0:
        return MAX_RATE
    return round(pages_s * PAGE_BYTES / MIB, 6)


def fmt_rate(key, unit=False):
    if key == MAX_RATE:
        return "max"
    text = f"{key:g}"
    return text + " MiB/s" if unit else text


def numeric_first(text):
    """Sort key: numbers by value (256 MiB before 1 GiB), then anything else by text."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def workload_of(row):
    return tuple(row[c] for c in WORKLOAD_COLUMNS)


def describe_workload(values):
    w = dict(zip(WORKLOAD_COLUMNS, values))
    parts = [f"{fmt_bytes(int(float(w['region_bytes'])))} region", f"{w['writers']} writers",
             f"{w['pattern']} pattern"]
    if w["workload"] != DEFAULT_WORKLOAD:
        parts.insert(0, f"{w['workload']} workload")
    if float(w["populate"]) != 1.0:
        parts.append(f"{float(w['populate']):.0%} populated")
    if w["thp"] == "on":
        parts.append("THP on")
    if w["numa_node"] not in ("", "-1"):
        parts.append(f"NUMA node {w['numa_node']}")
    bw = int(float(w["bandwidth_bytes_s"] or 0))
    parts.append(f"{w['sink']} sink" + (f" at {fmt_bytes(bw)}/s" if bw else ", no bandwidth cap"))
    if w["host"]:
        parts.append(f"on {w['host']} (kernel {w['kernel']})")
    return ", ".join(parts)


def workload_slug(values, varying):
    w = dict(zip(WORKLOAD_COLUMNS, values))
    parts = []
    for c in varying:
        if c in ("kernel", "cpu_model") and "host" in varying:
            continue  # the host names the machine; its kernel and CPU are in the title and summary
        v = w[c]
        if c == "cpu_model":
            v = "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in v)
        if c in ("region_bytes", "bandwidth_bytes_s"):
            v = fmt_bytes(int(float(v))).replace(" ", "")
        parts.append(f"{c.replace('_bytes', '').replace('_', '')}-{v}")
    return "_".join(parts).replace("/", "-")


# ---------------------------------------------------------------------------------------------
# Statistics

class Cell:
    """The ok runs of one series at one rate in one workload."""

    def __init__(self):
        self.rows = []

    def values(self, column, scale=1.0):
        return np.array([r[column] * scale for r in self.rows], dtype=float)

    def stat(self, column, scale=1.0):
        v = self.values(column, scale)
        return float(np.median(v)), float(v.min()), float(v.max())

    def any_not_converged(self):
        # converged is only meaningful for precopy; others always write 1.
        return any(r["converged"] == "0" for r in self.rows)


def build_cells(rows):
    """workload -> series -> rate -> Cell"""
    cells = defaultdict(lambda: defaultdict(lambda: defaultdict(Cell)))
    for r in rows:
        cells[workload_of(r)][r["_series"]][rate_key(r)].rows.append(r)
    return cells


def produces_image(series_cells):
    """False for `none` (it takes no snapshot): its image_bytes is always 0."""
    return any(r["image_bytes"] > 0 for cell in series_cells.values() for r in cell.rows)


# ---------------------------------------------------------------------------------------------
# Figures

plt.rcParams.update({
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linestyle": ":", "savefig.dpi": 150,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text for papers
})


class RateAxis:
    """Places target rates on a log x axis: 0 (writers idle) left of the smallest positive rate and
    `max` (unpaced) right of the largest, each labelled, so every measured rate has a tick."""

    def __init__(self, rate_keys):
        self.keys = sorted(set(rate_keys), key=lambda k: (k == MAX_RATE, k))
        positive = [k for k in self.keys if k > 0]
        lo, hi = (min(positive), max(positive)) if positive else (1.0, 1.0)
        self.pos = {}
        for k in self.keys:
            if k == MAX_RATE:
                self.pos[k] = hi * 4 if positive else 4.0
            elif k == 0:
                self.pos[k] = lo / 4
            else:
                self.pos[k] = k

    def x(self, key):
        return self.pos[key]

    def apply(self, ax):
        ax.set_xscale("log")
        xs = [self.pos[k] for k in self.keys]
        ax.set_xticks(xs)
        ax.set_xticklabels([fmt_rate(k) for k in self.keys])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        pad = 1.8 if len(xs) > 1 else 1.3
        ax.set_xlim(min(xs) / pad, max(xs) * pad)
        ax.set_xlabel("target write rate, all writers (MiB/s)")
        # Axis breaks around 0 and max: the distance to them means nothing.
        positive = [self.pos[k] for k in self.keys if k > 0]
        if MAX_RATE in self.keys and len(self.keys) > 1:
            finite = [self.pos[k] for k in self.keys if k != MAX_RATE]
            ax.axvline(np.sqrt(max(finite) * self.pos[MAX_RATE]), color="0.6", lw=0.8, ls="--")
        if 0 in self.keys and positive:
            ax.axvline(np.sqrt(min(positive) * self.pos[0]), color="0.6", lw=0.8, ls="--")


def log_ticks(axis):
    """Labelled 1-2-5 ticks on a log axis: a decade alone leaves most values unreadable."""
    lo, hi = sorted(axis.get_view_interval())
    decades = np.log10(hi / lo) if lo > 0 else 10
    subs = (1.0, 2.0, 5.0) if decades <= 3.5 else (1.0,)
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=subs, numticks=30))
    axis.set_minor_locator(matplotlib.ticker.LogLocator(base=10, subs=np.arange(2, 10), numticks=30))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: fmt_tick(v)))


def fmt_tick(v):
    """Short tick labels: 0.5, 20, 5k, 2M."""
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:g}{suffix}"
    return f"{v:g}"


def dodge(i, n):
    """Multiplicative x offset on a log axis so overlapping series stay visible."""
    return 1.0 + 0.045 * (i - (n - 1) / 2)


def choose_yscale(ax, values, linear_floor_zero=True):
    positive = [v for v in values if v > 0]
    if positive and min(positive) > 0 and len(positive) == len(values) and max(positive) / min(positive) > 8:
        ax.set_yscale("log")
        return "log"
    if linear_floor_zero:
        ax.set_ylim(bottom=0, top=max(max(values, default=0) * 1.1, 1e-9))
    return "linear"


def finish(fig, ax, title, workload, caption_parts, out_base, written, legend=True):
    ax.set_title(f"{title}\n{workload}", fontsize=9.5)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="strategy/tracker",
                  title_fontsize=8)
    caption = "; ".join(p for p in caption_parts if p) + "."
    fig.tight_layout()
    # Below the x label, inside the saved area (bbox_inches="tight" grows the canvas to include it).
    ax.annotate("\n".join(textwrap.wrap(caption, 110)), xy=(0, 0), xycoords="axes fraction",
                xytext=(-40, -34), textcoords="offset points", fontsize=7, color="0.25", va="top")
    for ext in ("png", "pdf"):
        path = f"{out_base}.{ext}"
        fig.savefig(path, bbox_inches="tight")
        written.append(path)
    plt.close(fig)


def rate_note(axis):
    notes = []
    if MAX_RATE in axis.keys:
        notes.append("max: writers unpaced (drawn at the right, after the dashed line)")
    if 0 in axis.keys:
        notes.append("0: writers idle (left of the dashed line)")
    return "; ".join(notes)


def n_reps_note(series_cells_list):
    counts = sorted({len(c.rows) for sc in series_cells_list for c in sc.values()})
    if not counts:
        return ""
    return f"n = {counts[0]}" + (f"-{counts[-1]}" if counts[-1] != counts[0] else "") + " runs per point"


def line_figure(ctx, column, ylabel, title, fname, *, scale=1.0, image_only=False, yscale="auto",
                ref_one=False, mark_unconverged=False):
    wl_cells, axis, styles = ctx["cells"], ctx["axis"], ctx["styles"]
    series = [s for s in styles.order if s in wl_cells]
    omitted = []
    if image_only:
        omitted = [s for s in series if not produces_image(wl_cells[s])]
        series = [s for s in series if s not in omitted]
    if not series:
        ctx["notes"].append(f"{fname}: skipped (no strategy that writes an image)")
        return
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    all_values, unconverged, modelled = [], False, False
    for i, s in enumerate(series):
        colour, marker, ls = styles(s)
        keys = [k for k in axis.keys if k in wl_cells[s]]
        stats = [wl_cells[s][k].stat(column, scale) for k in keys]
        xs = np.array([axis.x(k) * dodge(i, len(series)) for k in keys])
        med = np.array([m for m, _, _ in stats])
        lo = np.array([m - a for m, a, _ in stats])
        hi = np.array([b - m for m, _, b in stats])
        all_values += [a for _, a, _ in stats] + [b for _, _, b in stats]
        # Lines join only paced, non-zero rates: 0 and max sit at arbitrary distances behind axis breaks.
        joined = np.array([k > 0 for k in keys], dtype=bool)
        ax.errorbar(xs[joined], med[joined], yerr=[lo[joined], hi[joined]], color=colour, marker=marker, ls=ls,
                    lw=1.4, ms=5, capsize=3, label=s)
        if not joined.all():
            ax.errorbar(xs[~joined], med[~joined], yerr=[lo[~joined], hi[~joined]], color=colour,
                        marker=marker, ls="none", ms=5, capsize=3, label=None if joined.any() else s)
        modelled |= draw_model_line(ax, wl_cells[s], keys, xs, "model_" + column, scale, colour)
        if mark_unconverged:
            bad = [j for j, k in enumerate(keys) if wl_cells[s][k].any_not_converged()]
            if bad:
                unconverged = True
                ax.plot(xs[bad], med[bad], ls="none", marker=marker, ms=9, mfc="white", mec=colour, mew=1.4,
                        zorder=5)
                ax.plot(xs[bad], med[bad], ls="none", marker=marker, ms=3.5, color=colour, zorder=6)
    if yscale == "symlog":
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(bottom=-0.3)
    elif yscale == "auto":
        yscale = choose_yscale(ax, all_values)
    if ref_one:
        ax.axhline(1.0, color="0.35", lw=1, ls="--", zorder=0)
        ax.annotate("image = non-zero RSS", xy=(0.005, 1.0), xycoords=("axes fraction", "data"),
                    xytext=(2, -3), textcoords="offset points", fontsize=7, color="0.35", va="top")
        if yscale != "log":
            ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1.15))
    if yscale == "log":
        log_ticks(ax.yaxis)
        if ref_one:
            ax.set_ylim(bottom=min(ax.get_ylim()[0], 0.8))
    axis.apply(ax)
    ax.set_ylabel(ylabel)
    caption = [ERRORBAR_NOTE, n_reps_note([wl_cells[s] for s in series]),
               "log y" if yscale == "log" else ("symmetric-log y (linear below 1)" if yscale == "symlog" else ""),
               rate_note(axis),
               "ringed markers: precopy stopped on max_passes without converging" if unconverged else "",
               MODEL_NOTE if modelled else "",
               ("omitted (takes no snapshot): " + ", ".join(omitted)) if omitted else ""]
    finish(fig, ax, title, ctx["title"], caption, os.path.join(ctx["out"], fname + ctx["suffix"]), ctx["written"])


def bar_figure(ctx, column, ylabel, title, fname, *, scale=1.0, log=False, omit_all_zero=False, ref=None):
    """Grouped bars: one group per rate, one bar per series (coloured as in the line figures)."""
    wl_cells, axis, styles = ctx["cells"], ctx["axis"], ctx["styles"]
    series = [s for s in styles.order if s in wl_cells]
    omitted = []
    if omit_all_zero:
        omitted = [s for s in series if all(r[column] == 0 for c in wl_cells[s].values() for r in c.rows)]
        series = [s for s in series if s not in omitted]
    if not series:
        ctx["notes"].append(f"{fname}: skipped (every value is 0)")
        return
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    width = min(0.8 / len(series), 0.4)
    positive = [r[column] * scale for s in series for c in wl_cells[s].values() for r in c.rows
                if r[column] > 0]
    floor = min(positive) / 3 if (log and positive) else 0.0
    zero_marks = missing_marks = modelled = False
    for i, s in enumerate(series):
        colour, _, ls = styles(s)
        idx = [j for j, k in enumerate(axis.keys) if k in wl_cells[s]]
        stats = [wl_cells[s][axis.keys[j]].stat(column, scale) for j in idx]
        xs = np.array(idx) - width * len(series) / 2 + width * (i + 0.5)
        med = np.array([m for m, _, _ in stats])
        err = [[m - a for m, a, _ in stats], [b - m for m, _, b in stats]]
        hatch = None if ls == "-" else "//"
        heights = med - floor if log else med
        ax.bar(xs, heights, width * 0.92, bottom=floor if log else 0, color=colour, edgecolor="black", lw=0.4,
               hatch=hatch, label=s, yerr=err, capsize=2, ecolor="0.45", error_kw={"lw": 0.8})
        modelled |= draw_model_bars(ax, wl_cells[s], [axis.keys[j] for j in idx], xs, width * 0.92,
                                    "model_" + column, scale, colour)
        for j in range(len(axis.keys)):
            if j not in idx:  # no ok run of this series at this rate: say so rather than leave a gap
                missing_marks = True
                ax.annotate("n/a", xy=(j - width * len(series) / 2 + width * (i + 0.5), floor if log else 0),
                            xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=7,
                            rotation=90, color=colour)
        for x, m in zip(xs, med):
            if m <= 0:  # invisible as a bar: say it is zero rather than missing
                zero_marks = True
                ax.annotate("0", xy=(x, floor if log else 0), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=7, color=colour)
    if ref and max(positive, default=0) > ref[0] / 4:
        ax.axhline(ref[0], color="0.35", lw=1, ls="--", zorder=0)
        ax.annotate(ref[1], xy=(0.005, ref[0]), xycoords=("axes fraction", "data"), xytext=(2, 3),
                    textcoords="offset points", fontsize=7, color="0.35")
    if log and positive:
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        log_ticks(ax.yaxis)
    ax.set_xticks(range(len(axis.keys)))
    ax.set_xticklabels([fmt_rate(k) for k in axis.keys])
    ax.set_xlim(-0.6, len(axis.keys) - 0.4)
    ax.set_xlabel("target write rate, all writers (MiB/s)")
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    caption = ["bars: median over repetitions; error bars: min-max", n_reps_note([wl_cells[s] for s in series]),
               "log y" if log else "", "'0': median is zero" if zero_marks else "",
               "'n/a': no ok run there (unsupported or failed, see summary.md)" if missing_marks else "",
               MODEL_NOTE.replace("dashed", "dashed bar tops") if modelled else "",
               ("omitted (always 0): " + ", ".join(omitted)) if omitted else ""]
    finish(fig, ax, title, ctx["title"], caption, os.path.join(ctx["out"], fname + ctx["suffix"]), ctx["written"])


# ---------------------------------------------------------------------------------------------
# The model (analysis/model.py) over the measurements

def attach_model(all_rows, ok_rows):
    """Sets row['_model'] = model.py's predictions for each ok row (inputs from the rows themselves)."""
    import model  # beside this script; standard library only
    save_rates, copies = model.uncapped_save_rates(all_rows), model.verify_copy_times(all_rows)
    for r in ok_rows:
        r["_model"] = model.model_row({k: str(v) if isinstance(v, float) else v for k, v in r.items()},
                                      save_rates, copies)


def model_stat(cell, key, scale=1.0):
    """Median prediction of `key` over the cell's runs, or None where the model predicts nothing."""
    v = [r["_model"][key] for r in cell.rows if isinstance(r.get("_model", {}).get(key), (int, float))]
    return float(np.median(v)) * scale if v else None


def draw_model_line(ax, series_cells, keys, xs, key, scale, colour):
    """A dashed line of the series' colour through its median predictions (joined over paced rates,
    a short dash alone at 0 and max, like the measurements). True when something was drawn."""
    pred = [model_stat(series_cells[k], key, scale) for k in keys]
    have = np.array([p is not None for p in pred], dtype=bool)
    if not have.any():
        return False
    y = np.array([p if p is not None else np.nan for p in pred], dtype=float)
    joined = have & np.array([k > 0 for k in keys], dtype=bool)
    ax.plot(xs[joined], y[joined], color=colour, zorder=4, **MODEL_LINE)
    alone = have & ~joined
    ax.plot(xs[alone], y[alone], ls="none", marker="_", ms=12, mew=1.4, color=colour, zorder=4)
    return True


def draw_model_bars(ax, series_cells, keys, xs, width, key, scale, colour):
    """A dashed horizontal segment across each bar at the median prediction. True when drawn."""
    drawn = False
    for k, x in zip(keys, xs):
        p = model_stat(series_cells[k], key, scale)
        if p is not None:
            # On a bar of its own colour a dashed line vanishes: dashes over a white stroke, a bit wider.
            ends = [x - width * 0.7, x + width * 0.7]
            ax.plot(ends, [p, p], color="white", lw=3.4, zorder=5, solid_capstyle="butt")
            ax.plot(ends, [p, p], color=colour, ls=MODEL_LINE["ls"], lw=1.8, zorder=6)
            drawn = True
    return drawn


MODEL_METRICS = [("image_ratio", 1.0, "image_ratio"), ("passes", 1.0, "passes"),
                 ("completion_s", 1.0, "completion_s"), ("downtime_s", 1.0, "downtime_s"),
                 ("duplicate_pages", 1.0, "duplicate_pages"), ("faults", 1.0, "faults"),
                 ("extra_rss_bytes", 1.0 / MIB, "extra_rss (MiB)")]


def model_table(wl_cells, axis, styles):
    """Markdown: per series and rate, measured median / predicted median (relative error)."""
    if not any("_model" in r for sc in wl_cells.values() for c in sc.values() for r in c.rows):
        return []
    lines = ["### Model vs measurement", "",
             "Each cell: measured median / model.py's median prediction (relative error of the prediction). "
             "The model takes each run's own measured write rate; – where it predicts nothing.", "",
             "| strategy/tracker | rate (MiB/s) | " + " | ".join(m[2] for m in MODEL_METRICS) + " |",
             "|" + "---|" * (2 + len(MODEL_METRICS))]
    for s in styles.order:
        if s not in wl_cells or not produces_image(wl_cells[s]):
            continue
        for k in axis.keys:
            if k not in wl_cells[s]:
                continue
            cell, out = wl_cells[s][k], []
            for column, scale, _ in MODEL_METRICS:
                pred = model_stat(cell, "model_" + column, scale)
                if pred is None:
                    out.append("–")
                    continue
                meas = float(np.median([float(r[column]) * scale for r in cell.rows]))
                err = f" ({(pred - meas) / meas:+.0%})" if meas else ""
                out.append(f"{fmt_num(meas, 4)} / {fmt_num(pred, 4)}{err}")
            lines.append(f"| {s} | {fmt_rate(k)} | " + " | ".join(out) + " |")
    return lines + [""]


QUANTILES = [("write_p50_us", 0.5, "p50"), ("write_p99_us", 0.99, "p99"), ("write_p999_us", 0.999, "p99.9"),
             ("write_max_us", None, "max")]


def nines(q):
    """-log10(1-q): p50 -> 0.3, p99 -> 2, p99.9 -> 3 (spreads the tail); max drawn at 4."""
    return 4.0 if q is None else -np.log10(1.0 - q)


def quantile_figure(ctx, rate):
    wl_cells, styles = ctx["cells"], ctx["styles"]
    series = [s for s in styles.order if s in wl_cells and rate in wl_cells[s]]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    ys = [nines(q) for _, q, _ in QUANTILES]
    for s in series:
        colour, marker, ls = styles(s)
        cell = wl_cells[s][rate]
        xs = [cell.stat(c)[0] for c, _, _ in QUANTILES]
        xs = np.maximum.accumulate(np.maximum(xs, 1e-3))  # medians of ordered quantiles stay ordered
        ax.step(xs, ys, where="post", color=colour, ls=ls, lw=1.4, marker=marker, ms=5, label=s)
    ax.set_xscale("log")
    log_ticks(ax.xaxis)
    ax.set_yticks(ys)
    ax.set_yticklabels([label for _, _, label in QUANTILES])
    ax.set_ylim(0, 4.4)
    ax.set_xlabel("write latency during the snapshot (µs, log)")
    ax.set_ylabel("quantile (tail spread: -log10(1-q))")
    caption = [f"at target rate {fmt_rate(rate, unit=True)}",
               "not a full CDF: each run records only p50, p99, p99.9 and max; each point is the median of "
               "that quantile over repetitions, joined by steps", n_reps_note([{0: wl_cells[s][rate]} for s in series])]
    finish(fig, ax, f"Write latency quantiles at {fmt_rate(rate, unit=True)} (p50/p99/p99.9/max only)",
           ctx["title"], caption, os.path.join(ctx["out"], "latency_quantiles" + ctx["suffix"]), ctx["written"])


def pick_cdf_rate(requested, keys, raw_rates):
    """RATE may be `max`, a number of MiB/s, or a value of the CSV's `rate` column ("64MiB/s")."""
    if requested is None:
        finite = [k for k in keys if k != MAX_RATE]
        return max(finite) if finite else MAX_RATE
    if requested.strip().lower() == "max":
        return MAX_RATE if MAX_RATE in keys else None
    if requested in raw_rates:
        return raw_rates[requested]
    try:
        v = round(float(requested), 6)
    except ValueError:
        return None
    return v if v in keys else None


# ---------------------------------------------------------------------------------------------
# Summary

def summary_table(wl_cells, axis, styles):
    lines, unconverged = [], False
    cols = ["strategy/tracker", "runs", "image_ratio", "completion_s", "downtime_s", "duplicate_pages",
            "write_p99_us", "extra_rss (MiB)", "verified pass/fail/off"]
    for k in axis.keys:
        lines += [f"### target write rate {fmt_rate(k, unit=True)}", "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for s in styles.order:
            if s not in wl_cells or k not in wl_cells[s]:
                continue
            cell = wl_cells[s][k]
            image = produces_image(wl_cells[s])
            med = lambda c, scale=1.0, img=False: (  # noqa: E731
                "–" if img and not image else fmt_num(cell.stat(c, scale)[0], 4))
            ratio = med("image_ratio", img=True)
            if cell.any_not_converged():
                ratio += " †"
                unconverged = True
            v = Counter(r["verified"] for r in cell.rows)
            lines.append("| " + " | ".join([
                s, str(len(cell.rows)), ratio, med("completion_s", img=True), med("downtime_s"),
                "–" if not image else f"{cell.stat('duplicate_pages')[0]:.0f}", med("write_p99_us"),
                med("extra_rss_bytes", 1.0 / MIB), f"{v['pass']}/{v['fail']}/{v['off']}"]) + " |")
        lines.append("")
    if unconverged:
        lines += ["† precopy stopped on max_passes without converging in at least one repetition.", ""]
    if any(not produces_image(sc) for sc in wl_cells.values()):
        lines += ["–: takes no snapshot (no image).", ""]
    return lines


def write_summary(path, sources, all_rows, ok_rows, workloads, ctxs, figures_notes):
    status = Counter(r["status"] for r in all_rows)
    lines = ["# snapbench results summary", "",
             "Sources: " + ", ".join(f"`{p}` ({n} rows)" for p, n in sources.items()) + ".", "",
             f"Rows: {status['ok']} ok (plotted), {status['unsupported']} unsupported, {status['failed']} failed"
             + "".join(f", {n} {s}" for s, n in status.items() if s not in ("ok", "unsupported", "failed"))
             + ".", "",
             "Values are medians over the ok repetitions of each strategy/tracker at each target write rate. "
             "image_ratio = image bytes / non-zero RSS bytes (1 = every non-zero page saved once).", ""]
    fails = sum(1 for r in ok_rows if r["verified"] == "fail")
    if fails:
        lines += [f"**{fails} run(s) failed verification (image differs from memory at the consistency point): "
                  "a bug, not noise.**", ""]
    for wl in workloads:
        ctx = ctxs[wl]
        lines += [f"## {ctx['title']}", ""]
        if ctx["suffix"]:
            lines += [f"Figures: `*{ctx['suffix']}.png` / `.pdf`.", ""]
        lines += summary_table(ctx["cells"], ctx["axis"], ctx["styles"])
        lines += model_table(ctx["cells"], ctx["axis"], ctx["styles"])
    not_ok = [r for r in all_rows if r["status"] != "ok"]
    if not_ok:
        lines += ["## Runs not plotted", "", "| status | strategy/tracker | rate | count | reason |",
                  "|---|---|---|---|---|"]
        grouped = Counter((r["status"], strategy_label(r), r["rate"], r["reason"].replace("|", "/")) for r in not_ok)
        for (st, label, rate, reason), n in sorted(grouped.items()):
            lines.append(f"| {st} | {label} | {rate} | {n} | {reason} |")
        lines.append("")
    if figures_notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in figures_notes] + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", help="results CSV(s) written by `snapbench run --out` or a matrix")
    ap.add_argument("--out", required=True, help="directory for the figures (PNG + PDF) and summary.md")
    ap.add_argument("--host", help="plot only the rows run on this host (the CSV's host column)")
    ap.add_argument("--rate-for-cdf", metavar="RATE",
                    help="target rate of the latency-quantile figure: MiB/s (e.g. 64), a `rate` value as "
                         "in the CSV (e.g. 64MiB/s) or max; default: the highest paced rate")
    ap.add_argument("--no-model", action="store_true",
                    help="do not draw model.py's predictions (dashed lines) nor tabulate them in summary.md")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 1


def run(args):
    all_rows, sources = load_rows(args.csv)
    if args.host is not None:
        hosts = sorted({r["host"] for r in all_rows})
        all_rows = [r for r in all_rows if r["host"] == args.host]
        if not all_rows:
            raise InputError(f"--host {args.host}: no row ran there (hosts: {', '.join(hosts) or 'none recorded'})")
    machines = sorted({tuple(r[c] for c in MACHINE_COLUMNS) for r in all_rows})
    ok_rows = [r for r in all_rows if r["status"] == "ok"]
    if not ok_rows:
        status = Counter(r["status"] for r in all_rows)
        detail = ", ".join(f"{n} {s}" for s, n in status.items()) or "no rows at all"
        raise InputError(f"nothing to plot: no row with status=ok in {', '.join(args.csv)} ({detail})")
    os.makedirs(args.out, exist_ok=True)
    assign_series(ok_rows)
    if not args.no_model:
        attach_model(all_rows, ok_rows)
    styles = Styles(ok_rows)
    cells = build_cells(ok_rows)
    workloads = sorted(cells, key=lambda w: [numeric_first(v) for v in w])
    varying = [c for i, c in enumerate(WORKLOAD_COLUMNS) if len({w[i] for w in workloads}) > 1]
    written, notes, ctxs = [], [], {}
    if len(machines) > 1:
        notes.append(f"rows of {len(machines)} machines ({', '.join(m[0] or '?' for m in machines)}): figures and "
                     "summary tables are drawn per machine, never pooled")
    raw_rates = {r["rate"]: rate_key(r) for r in ok_rows}
    cdf_rates = {wl: pick_cdf_rate(args.rate_for_cdf, {k for sc in cells[wl].values() for k in sc}, raw_rates)
                 for wl in workloads}
    if all(r is None for r in cdf_rates.values()):
        known = sorted(set(raw_rates.values()), key=lambda k: (k == MAX_RATE, k))
        raise InputError(f"--rate-for-cdf {args.rate_for_cdf}: no ok run at that rate (target rates in MiB/s: "
                         f"{', '.join(fmt_rate(k) for k in known)})")
    for wl in workloads:
        wl_cells = cells[wl]
        keys = [k for sc in wl_cells.values() for k in sc]
        ctx = {"cells": wl_cells, "axis": RateAxis(keys), "styles": styles, "out": args.out, "written": written,
               "notes": notes, "title": describe_workload(wl),
               "suffix": ("_" + workload_slug(wl, varying)) if varying else ""}
        ctxs[wl] = ctx
        line_figure(ctx, "image_ratio", "image size / non-zero RSS", "Image size relative to non-zero memory",
                    "image_ratio", image_only=True, ref_one=True, mark_unconverged=True)
        line_figure(ctx, "completion_s", "snapshot completion time (s)", "Snapshot completion time",
                    "completion", image_only=True, mark_unconverged=True)
        line_figure(ctx, "duplicate_pages", "duplicate page records (pages)",
                    "Pages saved more than once", "duplicate_pages", image_only=True, yscale="symlog")
        line_figure(ctx, "write_p99_us", "writers' p99 write latency (µs)",
                    "p99 write latency during the snapshot", "write_p99")
        rate = cdf_rates[wl]
        if rate is None:
            notes.append(f"latency_quantiles{ctx['suffix']}: rate {args.rate_for_cdf} not in this workload "
                         f"(rates: {', '.join(fmt_rate(k) for k in ctx['axis'].keys)})")
        else:
            quantile_figure(ctx, rate)
        bar_figure(ctx, "downtime_s", "writers paused (s, log)", "Downtime (writers paused)", "downtime",
                   log=True, omit_all_zero=True)
        bar_figure(ctx, "extra_rss_bytes", "extra memory (MiB)",
                   "Extra memory used by the strategy (fork: copy-on-write copies)", "extra_rss",
                   scale=1.0 / MIB, ref=(float(wl[WORKLOAD_COLUMNS.index("region_bytes")]) / MIB, "region size"))
    summary = os.path.join(args.out, "summary.md")
    write_summary(summary, sources, all_rows, ok_rows, workloads, ctxs, notes)
    written.append(summary)
    for n in notes:
        print(f"plot.py: note: {n}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
