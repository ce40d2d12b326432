"""The report's plots: each function takes a report dict and returns PNG bytes, or None when
the plot does not apply to the report's mode (or there is nothing to draw, e.g. no reference).

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas, never through
pyplot: no global backend, no rcParams change, no GUI. A report read back from report.json
holds non-finite floats as the strings "NaN", "Infinity" and "-Infinity";
``comparisons.html.number`` turns them back into floats, so a report dict fresh from a run and
one loaded from JSON plot alike.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from comparisons.html import number
from comparisons.tolerances import KINDS

FLOOR = 1e-18  # where an exact zero is drawn on a log axis
DPI = 100
WIDTH = 7.0  # inches
MARKERS_UP_TO = 60  # steps; longer runs are drawn as plain lines
POINTS = 250  # per-step error curves of longer runs show the worst of each window of steps

ENGINE_COLORS = {"scratch": "#222222", "torch": "#d9480f", "jax": "#1c7ed6"}
KIND_COLORS = dict(
    zip(
        KINDS,
        (
            "#bcbd22",
            "#17becf",
            "#1f77b4",
            "#7f7f7f",
            "#d62728",
            "#2ca02c",
            "#9467bd",
            "#8c564b",
            "#e377c2",
        ),
        strict=True,
    )
)
EXTRA_COLORS = ("#17becf", "#bcbd22", "#ff7f0e")


@dataclass(frozen=True)
class Plot:
    """One plot of a report, with what the HTML page says about it."""

    key: str
    title: str
    alt: str
    caption: str
    png: bytes


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _engine_color(engine: str, i: int) -> str:
    return ENGINE_COLORS.get(engine, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def _kind_color(kind: str, i: int) -> str:
    return KIND_COLORS.get(kind, EXTRA_COLORS[i % len(EXTRA_COLORS)])


def _references(report: dict) -> list[str]:
    return [e for e in report["engines"] if e != "scratch"]


def _steps(report: dict) -> np.ndarray:
    return np.array([s["step"] for s in report["per_step"]], dtype=float)


def _epoch_boundaries(ax, report: dict) -> None:
    """A faint vertical line where each epoch after the first begins; whole-step ticks."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    per_step = report["per_step"]
    starts = [b["step"] for a, b in itertools.pairwise(per_step) if b["epoch"] != a["epoch"]]
    for step in starts[:200]:
        ax.axvline(step - 0.5, color="#000000", alpha=0.12, linewidth=0.8, zorder=0)


def _line_style(n_steps: int) -> dict:
    if n_steps <= MARKERS_UP_TO:
        return {"marker": "o", "markersize": 3}
    return {}


def _log_series(values: Iterable[Any], window: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Values for a log axis: zeros (and tinier values) clipped to FLOOR; also a mask of the
    non-finite ones, which ``_log_axis`` marks at the top (None, a missing value, is a
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


def _window(n_steps: int) -> int:
    return max(1, math.ceil(n_steps / POINTS)) if n_steps > 2 * POINTS else 1


def _log_axis(ax, series: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]) -> None:
    """Log scale for ``(x, y, non_finite, color)`` series already drawn: the floor shows when
    a value was clipped to it, and non-finite values appear as × in a band above the data."""
    ax.set_yscale("log")
    if any(np.any(y == FLOOR) for _, y, _, _ in series):
        ax.set_ylim(bottom=FLOOR / 3)
    bottom, top = ax.get_ylim()
    if any(bad.any() for _, _, bad, _ in series):
        top *= 10  # a band above the data for the × marks
        for x, _, bad, color in series:
            ax.plot(x[bad], np.full(int(bad.sum()), top), "x", color=color)
        top *= 10
    ax.set_ylim(bottom, top)


def loss_plot(report: dict) -> bytes | None:
    """The mini-batch loss of each engine at each step (lockstep and drift)."""
    if report["mode"] not in ("lockstep", "drift") or not report.get("per_step"):
        return None
    x = _steps(report)
    fig = _figure(3.5)
    ax = fig.add_subplot()
    style = _line_style(len(x))
    for i, engine in enumerate(report["engines"]):
        y = np.array([number(s["loss"].get(engine)) for s in report["per_step"]])
        y[~np.isfinite(y)] = np.nan  # a gap in the line
        scratch = engine == "scratch"
        ax.plot(
            x,
            y,
            label=engine,
            color=_engine_color(engine, i),
            linewidth=1.4 if scratch else 0.8,
            linestyle="-" if scratch else (0, (4, 3 + 2 * i)),
            zorder=2 if scratch else 3,
            **style,
        )
    _epoch_boundaries(ax, report)
    ax.set_xlabel("step")
    ax.set_ylabel("mini-batch loss")
    ax.set_title(f"loss per step ({report['network']['loss']}, mean over the batch)", fontsize=10)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def worst_rel_plot(report: dict) -> bytes | None:
    """Lockstep: each step's worst relative error per tensor kind, one panel per reference,
    with each kind's rtol as a dashed line of its colour."""
    if report["mode"] != "lockstep" or not report.get("per_step"):
        return None
    refs = [r for r in _references(report) if any(r in s["worst_rel"] for s in report["per_step"])]
    if not refs:
        return None
    tolerances = report["tolerances"][report["spec"]["dtype"]]
    window = _window(len(report["per_step"]))
    x = _steps(report)[::window]
    style = _line_style(len(x))
    fig = _figure(1.0 + 2.4 * len(refs))
    axes = fig.subplots(len(refs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, ref in zip(axes, refs, strict=True):
        rows = [s["worst_rel"].get(ref, {}) for s in report["per_step"]]
        kinds = [k for k in KINDS if any(k in r for r in rows)]
        kinds += sorted({k for r in rows for k in r} - set(kinds))
        marks = []
        for i, kind in enumerate(kinds):
            y, bad = _log_series((r.get(kind) for r in rows), window)
            color = _kind_color(kind, i)
            # earlier kinds on top: where kinds coincide, the first in dataflow order shows
            z = 2 + len(kinds) - i
            ax.plot(x, y, color=color, linewidth=0.9, label=kind, zorder=z, **style)
            if kind in tolerances:
                ax.axhline(
                    number(tolerances[kind]["rtol"]), color=color, linestyle="--", linewidth=1
                )
            marks.append((x, y, bad, color))
        _log_axis(ax, marks)
        _epoch_boundaries(ax, report)
        ax.set_ylabel("max |diff| / max |ref|")
        ax.set_title(f"scratch vs {ref}", fontsize=10)
        ax.grid(True, axis="y", alpha=0.25)
    axes[-1].set_xlabel("step" if window == 1 else f"step (each point: worst of {window} steps)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="kind")
    return _png(fig)


def heatmap_plot(report: dict) -> bytes | None:
    """Lockstep: the worst relative error over the run per (tensor kind, layer), one panel
    per reference; a cell holds the largest of its tensors (e.g. forward, layer 2 = Z2 and A2).
    The loss has no layer: it gets its own column, "—"."""
    if report["mode"] != "lockstep":
        return None
    per_tensor = {e: t for e, t in (report.get("per_tensor") or {}).items() if t}
    if not per_tensor:
        return None
    everything = [w for tensors in per_tensor.values() for w in tensors.values()]
    layers = sorted({w["layer"] for w in everything if w["layer"] is not None})
    columns = [*layers, None]
    kinds = [k for k in KINDS if any(w["kind"] == k for w in everything)]
    kinds += sorted({w["kind"] for w in everything} - set(kinds))

    grids = {}
    for engine, tensors in per_tensor.items():
        value = np.full((len(kinds), len(columns)), np.nan)
        failed = np.zeros(value.shape, dtype=bool)
        for w in tensors.values():
            i, j = kinds.index(w["kind"]), columns.index(w["layer"])
            rel = number(w["max_rel"])
            rel = math.inf if math.isnan(rel) else rel
            value[i, j] = rel if math.isnan(value[i, j]) else max(value[i, j], rel)
            failed[i, j] |= not w["ok"]
        grids[engine] = (value, failed)

    shown = np.concatenate([v[np.isfinite(v)].ravel() for v, _ in grids.values()])
    logs = np.log10(np.maximum(shown, FLOOR)) if shown.size else np.array([-16.0])
    norm = Normalize(vmin=math.floor(logs.min()), vmax=max(math.ceil(logs.max()), logs.min() + 1))
    cmap = "viridis"

    fig = _figure(0.9 + 0.36 * len(kinds))
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    image = None
    for ax, (engine, (value, failed)) in zip(axes, grids.items(), strict=True):
        finite = np.isfinite(value)
        logv = np.where(finite, np.log10(np.maximum(np.where(finite, value, 1.0), FLOOR)), np.nan)
        logv = np.where(np.isinf(value), norm.vmax, logv)  # non-finite error: the top colour
        image = ax.imshow(np.ma.masked_invalid(logv), cmap=cmap, norm=norm, aspect="auto")
        for (i, j), v in np.ndenumerate(value):
            if np.isnan(v):
                continue
            text = "inf" if np.isinf(v) else ("0" if v == 0 else f"{v:.0e}")
            shade = norm(logv[i, j])
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="black" if shade > 0.6 else "white",
                fontweight="bold" if failed[i, j] else "normal",
            )
            if failed[i, j]:
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#e03131", linewidth=2
                    )
                )
        ax.set_xticks(range(len(columns)), [str(c) if c is not None else "—" for c in columns])
        ax.set_yticks(range(len(kinds)), kinds if ax is axes[0] else [""] * len(kinds))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("layer (— : loss)", fontsize=8)
        ax.set_title(f"scratch vs {engine}", fontsize=10)
        ax.set_facecolor("#f1f3f5")
    colorbar = fig.colorbar(image, ax=list(axes), shrink=0.9)
    colorbar.set_label("log10 worst relative error", fontsize=8)
    colorbar.ax.tick_params(labelsize=8)
    return _png(fig)


def drift_plot(report: dict) -> bytes | None:
    """Drift: each reference's parameter drift from scratch at each step, log scale."""
    if report["mode"] != "drift" or not report.get("per_step"):
        return None
    refs = [
        r for r in _references(report) if any(r in s["param_drift"] for s in report["per_step"])
    ]
    if not refs:
        return None
    x = _steps(report)
    fig = _figure(3.5)
    ax = fig.add_subplot()
    marks = []
    for i, ref in enumerate(refs):
        y, bad = _log_series(s["param_drift"].get(ref) for s in report["per_step"])
        color = _engine_color(ref, i)
        ax.plot(x, y, color=color, linewidth=0.9, label=ref, **_line_style(len(x)))
        marks.append((x, y, bad, color))
    _log_axis(ax, marks)
    _epoch_boundaries(ax, report)
    ax.set_xlabel("step")
    ax.set_ylabel("max‖θ_ref − θ_scratch‖∞ / ‖θ_scratch‖∞", fontsize=8)
    ax.set_title("parameter drift of each free-running reference from scratch", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def accuracy_plot(report: dict) -> bytes | None:
    """Final accuracy per split, one bar per engine, on a zoomed axis with the values written."""
    metrics = report.get("metrics")
    if not metrics:
        return None
    engines = list(metrics)
    splits = list(next(iter(metrics.values())))
    acc = np.array(
        [[100 * number(metrics[e][s]["accuracy"]) for s in splits] for e in engines], dtype=float
    )
    finite = acc[np.isfinite(acc)]
    lo_value = float(finite.min()) if finite.size else 0.0
    hi_value = float(finite.max()) if finite.size else 100.0
    spread = max(hi_value - lo_value, 1.0)
    bottom = max(0.0, math.floor(lo_value - 0.6 * spread))

    fig = _figure(3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(engines)
    centers = np.arange(len(splits), dtype=float)
    for i, engine in enumerate(engines):
        xs = centers - 0.4 + width * (i + 0.5)
        heights = np.nan_to_num(acc[i], nan=bottom) - bottom
        bars = ax.bar(
            xs, heights, width * 0.92, bottom=bottom, label=engine, color=_engine_color(engine, i)
        )
        labels = ["n/a" if not np.isfinite(a) else f"{a:.2f}%" for a in acc[i]]
        ax.bar_label(bars, labels, fontsize=7, padding=2, rotation=90 if len(engines) > 3 else 0)
    ax.set_ylim(bottom, hi_value + 0.6 * spread)  # room above the bars for their values
    ax.set_xticks(centers, splits)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"final accuracy per split (y axis starts at {bottom:g}%)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    fig.legend(fontsize=8, loc="outside right upper")
    return _png(fig)


def gradcheck_plot(report: dict) -> bytes | None:
    """Gradcheck: each tensor's backprop-vs-central-difference error, one marker per step."""
    if report["mode"] != "gradcheck" or not report.get("per_step"):
        return None
    tensors = list(dict.fromkeys(t for s in report["per_step"] for t in s["max_rel"]))
    if not tensors:
        return None
    fig = _figure(3.2)
    ax = fig.add_subplot()
    x = np.arange(len(tensors), dtype=float)
    n = len(report["per_step"])
    marks = []
    for i, s in enumerate(report["per_step"]):
        y, bad = _log_series(s["max_rel"].get(t) for t in tensors)
        offset = (i - (n - 1) / 2) * min(0.12, 0.6 / n)
        color = f"C{i % 10}"
        ax.plot(x + offset, y, "o", markersize=4, color=color, label=f"step {s['step']}")
        marks.append((x + offset, y, bad, color))
    tol = report.get("finite_difference_tolerance")
    if tol:
        ax.axhline(number(tol["rtol"]), color="#e03131", linestyle="--", linewidth=1, label="rtol")
    _log_axis(ax, marks)
    ax.set_xticks(x, tensors)
    ax.set_ylabel("max |diff| / max |fd|")
    ax.set_title("backprop against central differences", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    if n > 6:
        fig.legend(fontsize=8, loc="outside right upper")
    else:
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


FLOOR_NOTE = (
    f"Exact zeros cannot be drawn on a log axis: they are clipped to {FLOOR:g}. "
    "Non-finite errors (NaN, inf) are drawn as × in a band at the top."
)

PLOTS: tuple[tuple[str, str, Callable[[dict], bytes | None], str, str], ...] = (
    (
        "loss",
        "Loss per step",
        loss_plot,
        "Mini-batch loss per step for each engine",
        "The training loss of each mini-batch, per engine (scratch solid, references dashed); "
        "faint vertical lines mark epoch boundaries. In lockstep every engine starts each step "
        "from scratch's parameters, so the curves coincide unless a forward pass differs. "
        "A non-finite loss leaves a gap.",
    ),
    (
        "worst_rel",
        "Worst relative error per step",
        worst_rel_plot,
        "Worst relative error per step and tensor kind, one panel per reference, log scale",
        "Each step's worst max |scratch − reference| / max |reference| over the tensors of each "
        "kind. The dashed line of the same colour is that kind's rtol; an element also gets "
        "atol (and, for updates, ulps) on top of it, so the line is a guide, not the pass "
        f"mark. Runs longer than {2 * POINTS} steps are drawn as the worst of each window of "
        "steps (the x label gives the window). " + FLOOR_NOTE,
    ),
    (
        "heatmap",
        "Worst error by layer and kind",
        heatmap_plot,
        "Heatmap of the worst relative error over the run by tensor kind and layer",
        "The worst relative error over all steps per tensor kind (rows) and layer (columns), "
        "colour on a log10 scale; the loss has no layer and sits in the column “—”. Cells with "
        "a tensor beyond tolerance are outlined in red. Zeros are shown as 0 and coloured at "
        f"{FLOOR:g}; a non-finite error shows as inf in the top colour; empty cells have no "
        "tensor.",
    ),
    (
        "drift",
        "Parameter drift",
        drift_plot,
        "Parameter drift of each reference from scratch per step, log scale",
        "Each engine trains freely from the same start; the curve is the largest, over the "
        "parameters, of ‖θ_ref − θ_scratch‖∞ / ‖θ_scratch‖∞ after each step. " + FLOOR_NOTE,
    ),
    (
        "accuracy",
        "Final accuracy",
        accuracy_plot,
        "Final accuracy per split and engine as grouped bars",
        "Accuracy of each engine's final parameters on every split. The y axis is zoomed (it "
        "does not start at 0) so small differences show; each bar carries its value.",
    ),
    (
        "gradcheck",
        "Backprop against finite differences",
        gradcheck_plot,
        "Finite-difference error per tensor, one marker per step, log scale",
        "Max |backprop − central difference| relative to each tensor's largest entry, one "
        "marker per checked step; the dashed red line is the finite-difference rtol. " + FLOOR_NOTE,
    ),
)


def plots_for(report: dict) -> list[Plot]:
    """Every plot that applies to the report, in the order the page shows them."""
    out = []
    for key, title, draw, alt, caption in PLOTS:
        png = draw(report)
        if png is not None:
            out.append(Plot(key, title, alt, caption, png))
    return out
