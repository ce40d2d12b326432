"""The plots' shared look: figure size, colours, log axes that take zeros and non-finite
values, epoch boundaries. Figures are built on ``matplotlib.figure.Figure`` with an explicit
Agg canvas, never through pyplot: no global backend, no rcParams change, no GUI."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, LogLocator, MaxNLocator, NullLocator

from comparisons.report.text import number, under_test

FLOOR = 1e-18  # where an exact zero is drawn on a log axis
DPI = 100
WIDTH = 7.0  # inches
MARKERS_UP_TO = 60  # steps; longer runs are drawn as plain lines
POINTS = 250  # per-step error curves of longer runs show the worst of each window of steps

UNDER_TEST_COLOR = "#222222"  # the engine under test's, whatever its name
ENGINE_COLORS = {"torch": "#d9480f", "jax": "#1c7ed6"}
# One colour per tensor kind (a kind the schema adds later takes one of EXTRA_COLORS).
KIND_COLORS = {
    "batch": "#bcbd22",
    "input": "#17becf",
    "forward": "#1f77b4",
    "loss": "#7f7f7f",
    "error_term": "#d62728",
    "gradient": "#2ca02c",
    "gradient_norm": "#ff7f0e",
    "update": "#9467bd",
    "counter": "#17becf",
    "optimizer_state": "#8c564b",
    "parameter": "#e377c2",
}
EXTRA_COLORS = ("#17becf", "#bcbd22", "#aec7e8")


# Margins in inches, fixed: a layout engine (constrained or tight) measures every text
# first, which took half of the report's plotting time. Room on the right for a legend.
MARGINS = {"left": 1.1, "right": 0.2, "bottom": 0.5, "top": 0.35, "between": 0.65}
LEGEND_ROOM = 1.35


def figure(height: float, legend: bool = False) -> Figure:
    """A figure ``height`` inches tall with the report's margins; ``legend``: room on the
    right for a figure legend (``outside_legend``)."""
    fig = Figure(figsize=(WIDTH, height), dpi=DPI)
    FigureCanvasAgg(fig)
    m = MARGINS
    right = m["right"] + (LEGEND_ROOM if legend else 0.0)
    fig.subplots_adjust(
        left=m["left"] / WIDTH,
        right=1 - right / WIDTH,
        bottom=m["bottom"] / height,
        top=1 - m["top"] / height,
        hspace=m["between"] / max(height - m["top"] - m["bottom"], 0.1),
        wspace=0.15,
    )
    return fig


def outside_legend(fig: Figure, *args, **kwargs) -> None:
    """The figure's legend in the room ``figure(legend=True)`` keeps on the right."""
    top = 1 - MARGINS["top"] / fig.get_figheight()
    fig.legend(
        *args, loc="upper left", bbox_to_anchor=(fig.subplotpars.right + 0.01, top), **kwargs
    )


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # zlib level 3, not Pillow's 6: a quarter of the plotting time, files 2% larger
    fig.savefig(
        buf, format="png", dpi=DPI, metadata={"Software": None}, pil_kwargs={"compress_level": 3}
    )
    return buf.getvalue()


def engine_color(engine: str, i: int, report: dict | None = None) -> str:
    """The engine's colour: the engine under test of ``report`` is drawn in black."""
    if report is not None and engine == under_test(report):
        return UNDER_TEST_COLOR
    return ENGINE_COLORS.get(engine, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def kind_color(kind: str, i: int) -> str:
    return KIND_COLORS.get(kind, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def references(report: dict) -> list[str]:
    return [e for e in report["engines"] if e != under_test(report)]


def steps(report: dict) -> np.ndarray:
    return np.array([s["step"] for s in report["per_step"]], dtype=float)


def epoch_boundaries(ax, report: dict) -> None:
    """A faint vertical line where each epoch after the first begins; whole-step ticks."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    per_step = report["per_step"]
    starts = [b["step"] for a, b in itertools.pairwise(per_step) if b["epoch"] != a["epoch"]]
    for step in starts[:200]:
        ax.axvline(step - 0.5, color="#000000", alpha=0.12, linewidth=0.8, zorder=0)


def line_style(n_steps: int) -> dict:
    if n_steps <= MARKERS_UP_TO:
        return {"marker": "o", "markersize": 3}
    return {}


def log_series(values: Iterable[Any], window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Values for a log axis: zeros (and tinier values) clipped to FLOOR; also a mask of the
    non-finite ones, which ``log_axis`` marks at the top (None, a missing value, is a
    gap, not a non-finite one). With ``window`` > 1, the worst of each window of consecutive
    values (a window with a non-finite value is one)."""
    values = list(values)
    y = np.array([number(v) for v in values], dtype=float)
    bad = ~np.isfinite(y) & np.array([v is not None for v in values], dtype=bool)
    if window > 1:
        starts = np.arange(0, len(y), window)
        bad = np.logical_or.reduceat(bad, starts)
        y = np.fmax.reduceat(np.where(np.isinf(y), np.nan, np.abs(y)), starts)
    return np.where(bad, np.nan, np.maximum(np.abs(y), FLOOR)), bad


def window(n_steps: int) -> int:
    return max(1, math.ceil(n_steps / POINTS)) if n_steps > 2 * POINTS else 1


def log_axis(ax, series: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]) -> None:
    """Log scale for ``(x, y, non_finite, color)`` series already drawn: the floor shows when
    a value was clipped to it, and non-finite values appear as × in a band above the data."""
    ax.set_yscale("log")
    # decades only, labelled 1e-13: matplotlib's minor ticks and 10^k labels (mathtext) took
    # half of a two-panel figure's time
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(numticks=8))
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
    if any(np.any(y == FLOOR) for _, y, _, _ in series):
        ax.set_ylim(bottom=FLOOR / 3)
    bottom, top = ax.get_ylim()
    if any(bad.any() for _, _, bad, _ in series):
        top *= 10  # a band above the data for the × marks
        for x, _, bad, color in series:
            ax.plot(x[bad], np.full(int(bad.sum()), top), "x", color=color)
        top *= 10
    ax.set_ylim(bottom, top)
