"""report.md from a report dict: the verdict and the first divergence first, then the rest.

``report.html`` (``comparisons/html.py``) shows the same sections with the plots embedded.
"""

from __future__ import annotations

from typing import Any


def _g(x: Any, digits: int = 3) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


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
            f"{_g(d['max_rel'])} (relative), allowed {_g(d['allowed'])}"
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
            f"{d['engine']}={_exact(d['reference_value'])} |diff|={_g(d['max_abs'])} "
            f"allowed={_g(d['allowed'])}"
        )
    upstream = d.get("upstream_agreed") or []
    lines.append(
        "  upstream still agreed: "
        + (", ".join(upstream) if upstream else "nothing (first tensor)")
    )
    return lines


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_g(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(report: dict) -> str:
    spec = report["spec"]
    lines = [f"# Backprop oracle report: {report['mode']}", ""]
    lines += [f"**{verdict_line(report)}**", ""]
    divergence = first_divergence_lines(report)
    if divergence:
        lines += ["```", *divergence, "```", ""]
    net = report["network"]
    lines += [
        "## Run",
        "",
        f"- data set: {report['dataset']['name']}; network {net['sizes']} "
        f"({', '.join(net['activations'])}), loss {net['loss']}, "
        f"{net['parameters']} parameters",
        f"- optimizer {spec['optimizer']} lr={spec['lr']}; batch {spec['batch_size']}, "
        f"{spec['epochs']} epochs, {report['schedule']['steps']} steps "
        f"(last batch {report['schedule']['last_batch_rows']} rows); seed {spec['seed']}; "
        f"{spec['dtype']}",
        f"- batch schedule sha256: `{report['schedule_sha256']}`",
        f"- engines: {', '.join(report['engines'])}",
        "",
    ]
    if report.get("walkthrough"):
        lines += _walkthrough(report)
    if report.get("metrics"):
        lines += _metrics(report)
    if report["mode"] == "lockstep":
        lines += _per_tensor(report)
    if report["mode"] == "drift":
        lines += _drift(report)
    if report["mode"] == "gradcheck":
        lines += _gradcheck(report)
    lines += _tolerances(report)
    lines += _environment(report)
    return "\n".join(lines) + "\n"


def _walkthrough(report: dict) -> list[str]:
    engines = [e for e in report["engines"]]
    lines = [
        "## The first mini-batch, equation by equation",
        "",
        "Step 0 of the run: each tensor's equation, shape, its first numbers in every engine "
        "and the largest difference from scratch.",
        "",
    ]
    rows = []
    for row in report["walkthrough"]:
        values = [", ".join(f"{v:.6g}" for v in row["values"].get(e, [])) for e in engines]
        diffs = "; ".join(f"{e} {_g(v)}" for e, v in row["max_abs_vs_scratch"].items())
        shape = "×".join(map(str, row["shape"])) or "scalar"
        rows.append([row["stage"], f"`{row['equation']}`", shape, *values, diffs])
    return lines + _table(["stage", "equation", "shape", *engines, "max |diff|"], rows) + [""]


def _metrics(report: dict) -> list[str]:
    metrics = report["metrics"]
    splits = list(next(iter(metrics.values())))
    rows = [
        [engine]
        + [f"{100 * m[s]['accuracy']:.2f}%" for s in splits]
        + [f"{m[s]['loss']:.6g}" for s in splits]
        for engine, m in metrics.items()
    ]
    header = ["engine", *[f"accuracy {s}" for s in splits], *[f"loss {s}" for s in splits]]
    return ["## Final metrics", "", *_table(header, rows), ""]


def _per_tensor(report: dict) -> list[str]:
    lines = [
        "## Worst error per tensor",
        "",
        "Over all steps: the largest |scratch − reference| (absolute, and relative to the "
        "tensor's largest entry) and the largest fraction of the allowance used (≤ 1 passes).",
        "",
    ]
    rows = []
    for engine, tensors in report["per_tensor"].items():
        for tensor, w in tensors.items():
            rows.append(
                [
                    engine,
                    tensor,
                    w["kind"],
                    w["max_abs"],
                    w["max_rel"],
                    w["ratio"],
                    w["worst_step"],
                    "ok" if w["ok"] else "**FAIL**",
                ]
            )
    header = ["engine", "tensor", "kind", "max abs", "max rel", "of allowance", "at step", ""]
    return lines + _table(header, rows) + [""]


def _drift(report: dict) -> list[str]:
    last = report["per_step"][-1]
    rows = [[e, d] for e, d in last["param_drift"].items()]
    return [
        "## Drift",
        "",
        f"Parameter drift after the last step ({last['step']}): max over parameters of "
        "‖θ_ref − θ_scratch‖∞ / ‖θ_scratch‖∞.",
        "",
        *_table(["engine", "parameter drift"], rows),
        "",
    ]


def _gradcheck(report: dict) -> list[str]:
    rows = [
        [s["step"], tensor, rel] for s in report["per_step"] for tensor, rel in s["max_rel"].items()
    ]
    return [
        "## Finite differences",
        "",
        "Max |backprop − central difference| relative to each tensor's largest entry.",
        "",
        *_table(["step", "tensor", "max rel"], rows),
        "",
    ]


def _tolerances(report: dict) -> list[str]:
    dtype = report["spec"]["dtype"]
    rows = [
        [kind, t["rtol"], t["atol"], t["ulps"], t["reason"]]
        for kind, t in report["tolerances"][dtype].items()
    ]
    return [
        f"## Tolerances ({dtype})",
        "",
        "An element passes when |a − b| ≤ rtol·|b| + atol·max|b| + ulps·eps·|θ_old|.",
        "",
        *_table(["kind", "rtol", "atol (× max|b|)", "ulps", "why"], rows),
        "",
    ]


def _environment(report: dict) -> list[str]:
    env = report["environment"]
    blas = env["blas"]
    lines = [
        "## Environment",
        "",
        f"- Python {env['python']} on {env['os']} ({env['machine']}, {env['cpu']}, "
        f"{env['cpu_count']} CPUs); device {env['device']}",
        f"- NumPy {env['numpy']}, BLAS {blas['name']} {blas['version']}, "
        f"thread pools: {blas['threadpools'] or blas.get('threadpools_note', 'none')}",
        f"- thread variables: {env['thread_variables']}",
    ]
    if env.get("torch"):
        lines.append(f"- PyTorch: {env['torch']}")
    if env.get("jax"):
        lines.append(f"- JAX: {env['jax']}")
    return [*lines, ""]


def render_html(report: dict) -> str:
    from comparisons.html import render_html as render

    return render(report)
