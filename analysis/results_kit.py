"""Helpers shared by the analysis scripts that read snapbench results CSVs (variants.py, perf_report.py).

Standard library only.
"""
import csv


def median(values):
    v = sorted(values)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def keyed(text):
    """A `notes` or `params` cell (key=value;...) as a dict."""
    return dict(kv.split("=", 1) for kv in text.split(";") if "=" in kv)


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def num(row, col):
    try:
        return float(row[col])
    except (KeyError, ValueError):
        return None
