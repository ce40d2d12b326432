"""The report's plots: each function takes a report dict and returns PNG bytes, or None when
the plot does not apply to the report's mode (or there is nothing to draw, e.g. no reference).

A report read back from report.json holds non-finite floats as the strings "NaN",
"Infinity" and "-Infinity"; ``text.number`` turns them back into floats, so a report dict
fresh from a run and one loaded from JSON plot alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from comparisons.report import plot_style as look
from comparisons.report.document import Figure
from comparisons.report.text import number, under_test
from scratch.trace_schema import KINDS


def loss_plot(report: dict) -> bytes | None:
    """The mini-batch loss of each engine at each step (lockstep and drift)."""
    if report["mode"] not in ("lockstep", "drift") or not report.get("per_step"):
        return None
    x = look.steps(report)
    fig = look.figure(3.5)
    ax = fig.add_subplot()
    line = look.line_style(len(x))
    for i, engine in enumerate(report["engines"]):
        y = np.array([number(s["loss"].get(engine)) for s in report["per_step"]])
        y[~np.isfinite(y)] = np.nan  # a gap in the line
        ours = engine == under_test(report)
        ax.plot(
            x,
            y,
            label=engine,
            color=look.engine_color(engine, i, report),
            linewidth=1.4 if ours else 0.8,
            linestyle="-" if ours else (0, (4, 3 + 2 * i)),
            zorder=2 if ours else 3,
            **line,
        )
    look.epoch_boundaries(ax, report)
    ax.set_xlabel("step")
    ax.set_ylabel("mini-batch loss")
    ax.set_title(f"loss per step ({report['network']['loss']}, mean over the batch)", fontsize=10)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=8, loc="upper right")
    return look.png(fig)


def worst_rel_plot(report: dict) -> bytes | None:
    """Lockstep: each step's worst relative error per tensor kind, one panel per reference.
    No pass mark is drawn: each element has its own roundoff allowance, which no one line
    per kind can show (the worst fraction of it used is in the per-tensor table)."""
    if report["mode"] != "lockstep" or not report.get("per_step"):
        return None
    refs = [
        r for r in look.references(report) if any(r in s["worst_rel"] for s in report["per_step"])
    ]
    if not refs:
        return None
    window = look.window(len(report["per_step"]))
    x = look.steps(report)[::window]
    line = look.line_style(len(x))
    fig = look.figure(1.0 + 2.4 * len(refs), legend=True)
    axes = fig.subplots(len(refs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, ref in zip(axes, refs, strict=True):
        rows = [s["worst_rel"].get(ref, {}) for s in report["per_step"]]
        kinds = [k for k in KINDS if any(k in r for r in rows)]
        kinds += sorted({k for r in rows for k in r} - set(kinds))
        marks = []
        for i, kind in enumerate(kinds):
            y, bad = look.log_series((r.get(kind) for r in rows), window)
            color = look.kind_color(kind, i)
            # earlier kinds on top: where kinds coincide, the first in dataflow order shows
            z = 2 + len(kinds) - i
            ax.plot(x, y, color=color, linewidth=0.9, label=kind, zorder=z, **line)
            marks.append((x, y, bad, color))
        look.log_axis(ax, marks)
        look.epoch_boundaries(ax, report)
        ax.set_ylabel("max |diff| / max |ref|")
        ax.set_title(f"{under_test(report)} vs {ref}", fontsize=10)
        ax.grid(True, axis="y", alpha=0.25)
    axes[-1].set_xlabel("step" if window == 1 else f"step (each point: worst of {window} steps)")
    handles, labels = axes[0].get_legend_handles_labels()
    look.outside_legend(fig, handles, labels, fontsize=8, title="kind")
    return look.png(fig)


def heatmap_plot(report: dict) -> bytes | None:
    """Lockstep: the worst relative error over the run per (tensor kind, layer), one panel
    per reference; a cell holds the largest of its tensors (e.g. forward, layer 2 = Z2 and A2).
    The loss has no layer: it gets its own column, "—"."""
    if report["mode"] != "lockstep":
        return None
    per_tensor = {e: t for e, t in (report.get("per_tensor") or {}).items() if t}
    if not per_tensor:
        return None
    kinds, columns, grids = _heatmap_grids(per_tensor)
    shown = np.concatenate([v[np.isfinite(v)].ravel() for v, _ in grids.values()])
    logs = np.log10(np.maximum(shown, look.FLOOR)) if shown.size else np.array([-16.0])
    norm = Normalize(vmin=math.floor(logs.min()), vmax=max(math.ceil(logs.max()), logs.min() + 1))
    cmap = "viridis"

    fig = look.figure(0.9 + 0.36 * len(kinds))
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    image = None
    for ax, (engine, (value, failed)) in zip(axes, grids.items(), strict=True):
        finite = np.isfinite(value)
        logv = np.where(
            finite, np.log10(np.maximum(np.where(finite, value, 1.0), look.FLOOR)), np.nan
        )
        logv = np.where(np.isinf(value), norm.vmax, logv)  # non-finite error: the top colour
        image = ax.imshow(np.ma.masked_invalid(logv), cmap=cmap, norm=norm, aspect="auto")
        _label_cells(ax, value, failed, norm(logv))
        ax.set_xticks(range(len(columns)), [str(c) if c is not None else "—" for c in columns])
        ax.set_yticks(range(len(kinds)), kinds if ax is axes[0] else [""] * len(kinds))
        ax.tick_params(labelsize=8)
        ax.set_xlabel("layer (— : loss)", fontsize=8)
        ax.set_title(f"{under_test(report)} vs {engine}", fontsize=10)
        ax.set_facecolor("#f1f3f5")
    colorbar = fig.colorbar(image, ax=list(axes), shrink=0.9)
    colorbar.set_label("log10 worst relative error", fontsize=8)
    colorbar.ax.tick_params(labelsize=8)
    return look.png(fig)


def _heatmap_grids(per_tensor: dict) -> tuple[list[str], list, dict]:
    """Rows (kinds, dataflow order), columns (layers, then None for the loss) and, per
    reference, the grid of worst relative errors and whether any tensor there failed."""
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

    return kinds, columns, grids


def _label_cells(ax, value: np.ndarray, failed: np.ndarray, shade: np.ndarray) -> None:
    """Each cell's value written in it; a failed cell in bold, framed in red."""
    for (i, j), v in np.ndenumerate(value):
        if np.isnan(v):
            continue
        text = "inf" if np.isinf(v) else ("0" if v == 0 else f"{v:.0e}")
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=7,
            color="black" if shade[i, j] > 0.6 else "white",
            fontweight="bold" if failed[i, j] else "normal",
        )
        if failed[i, j]:
            frame = Rectangle(
                (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#e03131", linewidth=2
            )
            ax.add_patch(frame)


def drift_plot(report: dict) -> bytes | None:
    """Drift: each reference's parameter drift from the engine under test at each step, log
    scale."""
    if report["mode"] != "drift" or not report.get("per_step"):
        return None
    refs = [
        r for r in look.references(report) if any(r in s["param_drift"] for s in report["per_step"])
    ]
    if not refs:
        return None
    x = look.steps(report)
    fig = look.figure(3.5)
    ax = fig.add_subplot()
    marks = []
    for i, ref in enumerate(refs):
        y, bad = look.log_series(s["param_drift"].get(ref) for s in report["per_step"])
        color = look.engine_color(ref, i, report)
        ax.plot(x, y, color=color, linewidth=0.9, label=ref, **look.line_style(len(x)))
        marks.append((x, y, bad, color))
    look.log_axis(ax, marks)
    look.epoch_boundaries(ax, report)
    ax.set_xlabel("step")
    ours = under_test(report)
    ax.set_ylabel(f"max‖θ_ref − θ_{ours}‖∞ / ‖θ_{ours}‖∞", fontsize=8)
    ax.set_title(f"parameter drift of each free-running reference from {ours}", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    return look.png(fig)


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

    fig = look.figure(3.2, legend=True)
    ax = fig.add_subplot()
    width = 0.8 / len(engines)
    centers = np.arange(len(splits), dtype=float)
    for i, engine in enumerate(engines):
        xs = centers - 0.4 + width * (i + 0.5)
        heights = np.nan_to_num(acc[i], nan=bottom) - bottom
        bars = ax.bar(
            xs,
            heights,
            width * 0.92,
            bottom=bottom,
            label=engine,
            color=look.engine_color(engine, i, report),
        )
        labels = ["n/a" if not np.isfinite(a) else f"{a:.2f}%" for a in acc[i]]
        ax.bar_label(bars, labels, fontsize=7, padding=2, rotation=90 if len(engines) > 3 else 0)
    ax.set_ylim(bottom, hi_value + 0.6 * spread)  # room above the bars for their values
    ax.set_xticks(centers, splits)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"final accuracy per split (y axis starts at {bottom:g}%)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    look.outside_legend(fig, fontsize=8)
    return look.png(fig)


def gradcheck_plot(report: dict) -> bytes | None:
    """Gradcheck: each tensor's backprop-vs-central-difference error, one marker per step."""
    if report["mode"] != "gradcheck" or not report.get("per_step"):
        return None
    tensors = list(dict.fromkeys(t for s in report["per_step"] for t in s["max_rel"]))
    if not tensors:
        return None
    n = len(report["per_step"])
    fig = look.figure(3.2, legend=n > 6)
    ax = fig.add_subplot()
    x = np.arange(len(tensors), dtype=float)
    marks = []
    for i, s in enumerate(report["per_step"]):
        y, bad = look.log_series(s["max_rel"].get(t) for t in tensors)
        offset = (i - (n - 1) / 2) * min(0.12, 0.6 / n)
        color = f"C{i % 10}"
        ax.plot(x + offset, y, "o", markersize=4, color=color, label=f"step {s['step']}")
        marks.append((x + offset, y, bad, color))
    tol = report.get("finite_difference_tolerance")
    if tol:
        ax.axhline(number(tol["rtol"]), color="#e03131", linestyle="--", linewidth=1, label="rtol")
    look.log_axis(ax, marks)
    ax.set_xticks(x, tensors)
    ax.set_ylabel("max |diff| / max |fd|")
    ax.set_title("backprop against central differences", fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    if n > 6:
        look.outside_legend(fig, fontsize=8)
    else:
        ax.legend(fontsize=8, loc="best")
    return look.png(fig)


FLOOR_NOTE = (
    f"Exact zeros cannot be drawn on a log axis: they are clipped to {look.FLOOR:g}. "
    "Non-finite errors (NaN, inf) are drawn as × in a band at the top."
)

# The alt text and caption name the engine under test as {under_test} (filled in per report).
PLOTS: tuple[tuple[str, str, Callable[[dict], bytes | None], str, str], ...] = (
    (
        "loss",
        "Loss per step",
        loss_plot,
        "Mini-batch loss per step for each engine",
        "The training loss of each mini-batch, per engine ({under_test} solid, references "
        "dashed); faint vertical lines mark epoch boundaries. In lockstep every engine starts "
        "each step from {under_test}'s parameters, so the curves coincide unless a forward "
        "pass differs. A non-finite loss leaves a gap.",
    ),
    (
        "worst_rel",
        "Worst relative error per step",
        worst_rel_plot,
        "Worst relative error per step and tensor kind, one panel per reference, log scale",
        "Each step's worst max |{under_test} − reference| / max |reference| over the tensors of "
        "each kind. No pass mark is drawn: every element is judged against its own allowance, "
        "derived from the roundoff of the operations that compute it, so the same relative "
        "error can pass in one tensor and fail in another; the table “Worst error per tensor” "
        "gives the largest fraction of its allowance each tensor used. Runs longer than "
        f"{2 * look.POINTS} steps are drawn as the worst of each window of steps (the x "
        "label gives the window). " + FLOOR_NOTE,
    ),
    (
        "heatmap",
        "Worst error by layer and kind",
        heatmap_plot,
        "Heatmap of the worst relative error over the run by tensor kind and layer",
        "The worst relative error over all steps per tensor kind (rows) and layer (columns), "
        "colour on a log10 scale; the loss has no layer and sits in the column “—”. Cells with "
        "a tensor beyond tolerance are outlined in red. Zeros are shown as 0 and coloured at "
        f"{look.FLOOR:g}; a non-finite error shows as inf in the top colour; empty cells have no "
        "tensor.",
    ),
    (
        "drift",
        "Parameter drift",
        drift_plot,
        "Parameter drift of each reference from {under_test} per step, log scale",
        "Each engine trains freely from the same start; the curve is the largest, over the "
        "parameters, of ‖θ_ref − θ_{under_test}‖∞ / ‖θ_{under_test}‖∞ after each step. "
        + FLOOR_NOTE,
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


def plots_for(report: dict) -> list[Figure]:
    """Every plot that applies to the report, in the order the page shows them."""
    out = []
    for key, title, draw, alt, caption in PLOTS:
        png = draw(report)
        if png is not None:
            named = {"under_test": under_test(report)}
            out.append(Figure(key, title, alt.format(**named), caption.format(**named), png))
    return out
