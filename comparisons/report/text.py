"""The words every report shares: its verdict line, where the engines first disagreed, and
how numbers are written (report.json keeps NaN and infinities as strings)."""

from __future__ import annotations

import math
from typing import Any

from comparisons.run.under_test import SCRATCH_NAME


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


def under_test(report: dict) -> str:
    """The engine under test's name: scratch's, or that of the engine ``--engine`` gave (the
    key of its entries wherever the report has one per engine)."""
    return (report.get("under_test") or {}).get("name") or report["engines"][0]


def verdict_line(report: dict) -> str:
    """The first line of every output: the verdict in capitals, and in a few words why."""
    mode, verdict = report["mode"], report["verdict"]
    engines = ", ".join(report["engines"])
    if mode == "check":
        return _check_line(report)
    if verdict == "diverged":
        return f"DIVERGED: {(report.get('diverged') or {}).get('description', '')}"
    if verdict == "error":
        return f"ERROR: {report['error']['description']}"
    if verdict == "agree":
        if mode == "lockstep":
            return (
                f"AGREE: {engines} agree on every tensor of all {report['steps_run']} steps "
                f"({report['spec']['dtype']})"
            )
        if mode == "drift":
            return f"AGREE: {engines} stay within the drift allowance at every step and split"
        steps = len(report["per_step"])
        return f"AGREE: backprop matches finite differences at {steps} step{'s' * (steps > 1)}"
    if mode == "lockstep":
        verified = report.get("steps_verified", report["steps_run"])
        first = (report.get("first_divergence") or {}).get("tensor", "")
        if not report["divergent_steps"] and first.endswith(", evaluation)"):
            return (
                f"DISAGREE: all {verified} steps agree, and the final evaluation does not: {first}"
            )
        then = ""
        if report.get("diverged"):
            then = (
                f"; then every engine went non-finite at step {report['diverged']['step']}, "
                "where the run ended"
            )
        elif report.get("stopped"):
            then = f"; {report['stopped']}"
        return (
            f"DISAGREE: {report['divergent_steps']} of {verified} steps verified have a tensor "
            f"beyond tolerance{then}"
        )
    if mode == "drift":
        first = (report.get("first_divergence") or {}).get("tensor", "")
        if first.endswith(", evaluation)"):
            return f"DISAGREE: the final evaluation differs from the same state: {first}"
        return "DISAGREE: the free-running engines drift beyond the drift allowance"
    return "DISAGREE: backprop and finite differences differ"


def _check_line(report: dict) -> str:
    cases = report["cases"]
    failing = [c for c in cases if c["verdict"] != "agree"]
    if not failing:
        fd = sum(1 for c in cases if c.get("gradcheck") == "agree")
        ours = under_test(report)
        references = ", ".join(report["engines"][1:])
        recorded = report.get("recorded")
        if recorded:
            return (
                f"AGREE: {ours} agrees with {references} as recorded on "
                f"{recorded['created']} in every pair of option values ({len(cases)} cases in "
                f"lockstep, finite differences on {fd}; no drift run: it needs live references)"
            )
        loop = f"{ours}'s training loop" if ours == "scratch" else "its own steps"
        drifts = sum(1 for c in cases if c.get("mode") == "drift")
        runs = f"{drifts} drift run{'s' * (drifts != 1)}"
        return (
            f"AGREE: {ours} agrees with {references} in every pair of option values "
            f"({len(cases) - drifts} cases in lockstep, finite differences on {fd}, and {runs} "
            f"of {loop})"
        )
    return (
        f"{report['verdict'].upper()}: {len(failing)} of {len(cases)} cases fail; the first is "
        f"{report['failed_case']}"
    )


def accuracy_lines(report: dict) -> list[str]:
    """The run's result in a few lines: each engine's final accuracy on every split (none
    where the run has no metrics: it diverged or stopped early)."""
    metrics = report.get("metrics")
    if not metrics:
        return []
    splits = list(next(iter(metrics.values())))
    width = max(len(e) for e in metrics)
    lines = [f"final accuracy ({', '.join(splits)}):"]
    for engine, by_split in metrics.items():
        shares = "  ".join(f"{percent(by_split[s]['accuracy']):>7}" for s in splits)
        lines.append(f"  {engine:<{width}}  {shares}")
    return lines


def first_divergence_lines(report: dict) -> list[str]:
    """Where the engines first disagree: epoch, step, tensor, layer, worst element, values."""
    d = report.get("first_divergence")
    if not d:
        return []
    ours = under_test(report)
    if "index" not in d:  # drift's: a step and an engine, no element
        if d.get("problem"):
            at = f"step {d['step']} (epoch {d['epoch']})"
            return [f"first divergence: {at}: {d['tensor']}: {d['problem']}"]
        if "split" in d:
            return [
                f"worst: {d['engine']} on {d['split']}: final loss differs from {ours}'s by "
                f"{fmt(d['max_rel'])} (relative), allowed {fmt(d['allowed'])}"
            ]
        return [
            f"first drift beyond the allowance: step {d['step']} (epoch {d['epoch']}): "
            f"{d['engine']}'s {d['tensor']} differ from {ours}'s by {fmt(d['max_rel'])} "
            f"(relative), allowed {fmt(d['allowed'])}"
        ]
    layer = f", layer {d['layer']}" if d.get("layer") else ""
    index = "[" + ", ".join(map(str, d["index"])) + "]"
    against = "" if d["engine"] == ours else f" against {d['engine']}"
    at = f"epoch {d['epoch']}, step {d['step']} (batch {d['batch']})"
    if d["kind"] == "evaluation":  # every engine from the state after the last step
        at = f"the final evaluation, from the state after step {d['step']}"
    lines = [f"first divergence: {at}: {d['tensor']} ({d['kind']}{layer}){against}"]
    if d.get("problem"):
        lines.append(f"  {d['problem']}")
    else:
        lines.append(
            f"  worst element {d['tensor']}{index}: {ours}="
            f"{_exact(d['under_test_value'])} "
            f"{d['engine']}={_exact(d['reference_value'])} |diff|={fmt(d['max_abs'])} "
            f"allowed={fmt(d['allowed'])}"
        )
    upstream = d.get("upstream_agreed") or []
    lines.append(
        "  upstream still agreed: "
        + (", ".join(upstream) if upstream else "nothing (first tensor)")
    )
    return lines


# A tensor kind of the trace schema as the headline names it.
KIND_WORDS = {
    "batch": "the batch's rows",
    "input": "the batch",
    "forward": "forward values",
    "dropout_mask": "dropout masks",
    "batch_stat": "batch statistics",
    "running_stat": "running statistics",
    "loss": "the loss",
    "error_term": "error terms",
    "batch_stat_grad": "batch statistics' gradients",
    "gradient": "gradients",
    "gradient_norm": "the gradient norm",
    "learning_rate": "the learning rate",
    "update": "updates",
    "counter": "the step count",
    "optimizer_state": "optimizer state",
    "parameter": "new parameters",
}


def headline_details(report: dict) -> list[str]:
    """The lines under the verdict: what an engine computed before it raised, where the
    engines first disagreed, who is wrong, and where in the engine under test to look."""
    lines = []
    origin = report.get("under_test") or {}
    ours = under_test(report)
    if origin.get("spec", SCRATCH_NAME) != SCRATCH_NAME:  # --engine's: which, from where
        found = ", ".join(f"{k} {origin[k]}" for k in ("file", "version") if origin.get(k))
        lines.append(
            f"engine under test: {ours} ({origin['spec']}" + (f"; {found})" if found else ")")
        )
    if report.get("compared"):
        words = [KIND_WORDS.get(k, k) for k in report["compared"]]
        lines.append(f"compared, of {ours}'s behaviour: " + ", ".join(words))
    if report.get("not_provided"):
        lines.append(
            "not provided by the engine under test (at one step or more), so not compared "
            "there: " + ", ".join(report["not_provided"])
        )
    if report.get("failed_case"):
        lines.append(f"in case {report['failed_case']}:")
    error = report.get("error")
    if error:
        computed = error.get("computed") or []
        lines.append("tensors computed before the exception: " + (", ".join(computed) or "none"))
        if report.get("first_divergence"):
            lines.append("the first of them to disagree:")
    lines += first_divergence_lines(report)
    arbitration = report.get("arbitration")
    if arbitration:
        lines.append(f"who is wrong: {arbitration['explanation']}")
    look_at = (arbitration or {}).get("look_at") or (report.get("first_divergence") or {}).get(
        "look_at"
    )
    if look_at:
        lines.append(f"look at: {look_at}")
    elif error and error["engine"] == ours:
        lines.append(f"look at: {error['where']}")
    return lines
