"""The report's tables as CSV files beside report.json, for pandas or a spreadsheet:

``steps.csv``    one row per step: its step, epoch and every per-step figure of the mode —
                 the loss of each engine and, in lockstep, the worst relative error of each
                 tensor kind against each reference (``worst_rel.torch.forward``); in drift,
                 each reference's parameter drift; in gradcheck, each tensor's error.
``metrics.csv``  one row per engine and split: the final accuracy and loss.

A nested figure becomes one column, its keys joined by dots; the columns keep the order in
which the report first gives them. A missing figure is an empty cell; a non-finite one is
``nan``, ``inf`` or ``-inf`` (``pandas.read_csv`` reads all three as floats).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable

from comparisons.report.text import number

NON_FINITE = ("NaN", "Infinity", "-Infinity")


def steps_csv(report: dict) -> str:
    """``steps.csv`` of a report with per-step figures."""
    rows = [_flatten(step) for step in report["per_step"]]
    return _csv(rows)


def metrics_csv(report: dict) -> str:
    """``metrics.csv`` of a report with final metrics."""
    rows = [
        {"engine": engine, "split": split, **_flatten(figures)}
        for engine, splits in report["metrics"].items()
        for split, figures in splits.items()
    ]
    return _csv(rows)


def csv_renderers(report: dict) -> dict[str, Callable[[dict], str]]:
    """The CSV files that apply to ``report``: ``steps.csv`` where it has steps,
    ``metrics.csv`` where it has final metrics."""
    out: dict[str, Callable[[dict], str]] = {}
    if report.get("per_step"):
        out["steps.csv"] = steps_csv
    if report.get("metrics"):
        out["metrics.csv"] = metrics_csv
    return out


def _flatten(value: dict, prefix: str = "") -> dict:
    out = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            out.update(_flatten(item, name + "."))
        else:
            out[name] = item
    return out


def _csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    return buffer.getvalue()


def _cell(value) -> str:
    """A number as Python writes it (shortest round-trip), a non-finite one as nan or ±inf."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, str):  # report.json's spellings of non-finite numbers become floats
        return _cell(number(value)) if value in NON_FINITE else value
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return repr(value)
