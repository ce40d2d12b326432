"""The words every report shares: its verdict line, where the engines first disagreed, and
how numbers are written (report.json keeps NaN and infinities as strings)."""

from __future__ import annotations

import math
from typing import Any


def number(x: Any) -> float:
    """A report value as a float: report.json's "NaN"/"Infinity"/"-Infinity" strings (JSON
    has no such numbers) and None become floats too."""
    if x is None:
        return math.nan
    if isinstance(x, str):
        return {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf}.get(
            x.lower(), math.nan
        )
    return float(x)


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant digits; ints, and report.json's "NaN" and
    "Infinity" strings, as they are; None as a dash."""
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def percent(x: Any) -> str:
    value = number(x)
    return f"{100 * value:.2f}%" if math.isfinite(value) else str(x)


def _exact(x: Any) -> str:
    """All the digits of a float ("NaN" and "Infinity" come back from JSON as strings)."""
    return repr(x) if isinstance(x, float) else str(x)


def verdict_line(report: dict) -> str:
    mode = report["mode"]
    engines = ", ".join(report["engines"])
    if report["verdict"] == "agree":
        if mode == "lockstep":
            return (
                f"AGREE: {engines} agree on every tensor of all {report['steps_run']} steps "
                f"({report['spec']['dtype']})"
            )
        if mode == "drift":
            return f"AGREE: {engines} end within the drift tolerance on every split"
        steps = len(report["per_step"])
        return f"AGREE: backprop matches finite differences at {steps} step{'s' * (steps > 1)}"
    if mode == "lockstep":
        return (
            f"DISAGREE: {report['divergent_steps']} of {report['steps_run']} steps have a "
            f"tensor beyond tolerance"
        )
    if mode == "drift":
        return "DISAGREE: the free-running engines end beyond the drift tolerance"
    return "DISAGREE: backprop and finite differences differ"


def first_divergence_lines(report: dict) -> list[str]:
    """Where the engines first disagree: epoch, step, tensor, layer, worst element, values."""
    d = report.get("first_divergence")
    if not d:
        return []
    if report["mode"] == "drift":
        return [
            f"worst: {d['engine']} on {d['split']}: final loss differs from scratch's by "
            f"{fmt(d['max_rel'])} (relative), allowed {fmt(d['allowed'])}"
        ]
    layer = f", layer {d['layer']}" if d.get("layer") else ""
    index = "[" + ", ".join(map(str, d["index"])) + "]"
    lines = [
        f"first divergence: epoch {d['epoch']}, step {d['step']} (batch {d['batch']}): "
        f"{d['tensor']} ({d['kind']}{layer}) against {d['engine']}",
    ]
    if d.get("problem"):
        lines.append(f"  {d['problem']}")
    else:
        lines.append(
            f"  worst element {d['tensor']}{index}: scratch={_exact(d['scratch_value'])} "
            f"{d['engine']}={_exact(d['reference_value'])} |diff|={fmt(d['max_abs'])} "
            f"allowed={fmt(d['allowed'])}"
        )
    upstream = d.get("upstream_agreed") or []
    lines.append(
        "  upstream still agreed: "
        + (", ".join(upstream) if upstream else "nothing (first tensor)")
    )
    return lines


def headline_details(report: dict) -> list[str]:
    """The lines under the verdict: where the engines first disagreed."""
    return first_divergence_lines(report)
