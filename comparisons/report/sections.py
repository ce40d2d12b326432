"""The sections of a run's report (lockstep, drift, gradcheck), built from report.json's content.

``document(report)`` is what both writers render; ``with_figures`` adds the plots, which only
the HTML page shows (drawing them needs matplotlib, an optional extra).
"""

from __future__ import annotations

import math
from typing import Any

from comparisons.report.document import (
    Block,
    Cell,
    Document,
    Facts,
    Paragraph,
    Row,
    Section,
    Verdict,
    cell,
    row,
    table,
)
from comparisons.report.text import (
    fmt,
    headline_details,
    number,
    percent,
    under_test,
    verdict_line,
)

NO_MATPLOTLIB = "No plots: matplotlib is not installed (pip install '.[reports]')."

OPTIMIZER_SETTINGS = {
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "adam": ("beta1", "beta2", "eps"),
    "adamw": ("beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("alpha", "eps"),
}


def document(report: dict, with_figures: bool = False) -> Document:
    """Every section of the report, in reading order."""
    mode = report["mode"]
    verdict = Verdict(
        verdict_line(report), report["verdict"] == "agree", tuple(headline_details(report))
    )
    if mode == "check":
        sections = [
            Section("cases", "Cases", check_section(report)),
            Section("tolerances", "Tolerances", tolerance_section(report, "float64")),
            Section("environment", "Environment", environment_section(report)),
        ]
        return Document("Backprop oracle report: check", verdict, tuple(sections), lead(report))
    sections = [Section("run", "Run", run_section(report))]
    if report.get("walkthrough"):
        title = "The first mini-batch, equation by equation"
        sections.append(Section("walkthrough", title, walkthrough_section(report)))
    if report.get("metrics"):
        sections.append(Section("metrics", "Final metrics", metrics_section(report)))
    elif report.get("metrics_note"):
        note = Paragraph(report["metrics_note"] + ": accuracies of such a run mean nothing.")
        sections.append(Section("metrics", "Final metrics", (note,)))
    if with_figures:
        sections.append(Section("plots", "Plots", figures(report)))
    if mode == "lockstep":
        sections.append(Section("per-tensor", "Worst error per tensor", per_tensor_section(report)))
    if mode == "drift":
        sections.append(Section("drift", "Drift", drift_section(report)))
    if mode == "gradcheck":
        sections.append(
            Section("finite-differences", "Finite differences", gradcheck_section(report))
        )
    dtype = report["spec"]["dtype"]
    sections.append(
        Section("tolerances", f"Tolerances ({dtype})", tolerance_section(report, dtype))
    )
    sections.append(Section("environment", "Environment", environment_section(report)))
    return Document(f"Backprop oracle report: {mode}", verdict, tuple(sections), lead(report))


def lead(report: dict) -> str:
    """One sentence that says what the report compared and how."""
    ours = under_test(report)
    references = " and ".join(e for e in report["engines"] if e != ours)
    mode = report["mode"]
    if not references and mode in ("lockstep", "drift"):
        return (
            f"This report runs {ours} alone: --engines named no reference, so no tensor was "
            "compared with another engine's."
        )
    if mode == "lockstep":
        steps = report["schedule"]["steps"]
        return (
            f"This report compares {ours} with {references} in lockstep: before each of the "
            f"{steps} training steps every reference is loaded with {ours}'s parameters and "
            "optimizer state, every engine takes the same mini-batch, and every tensor of the "
            "step is compared with its roundoff allowance, so a disagreement is found at the "
            "step and tensor where it starts."
        )
    if mode == "drift":
        return (
            f"This report compares {ours} with {references} training freely: every engine starts "
            "from the same weights and takes the same mini-batches, nothing is reloaded between "
            "steps, and each step's loss and parameters and the final losses on every split "
            "are compared with the drift allowance."
        )
    if mode == "gradcheck":
        return (
            f"This report compares {ours}'s error terms and gradients at the first "
            f"{len(report['per_step'])} steps with central finite differences of its own loss, "
            "in float64."
        )
    source = "their recorded traces" if report.get("recorded") else references
    return (
        f"This report compares {ours} with {source} in short lockstep runs that together hold "
        f"every pair of option values (before each step every reference starts from {ours}'s "
        "state), with finite differences on the float64 cases."
    )


def figures(report: dict) -> tuple[Block, ...]:
    """The report's plots, or a note where matplotlib (an optional extra) is absent: a
    report without plots beats losing the whole report folder at the end of a run."""
    try:
        from comparisons.report.plots import plots_for  # needs matplotlib
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "matplotlib":
            raise
        return (Paragraph(NO_MATPLOTLIB, note=True),)
    return tuple(plots_for(report))


def run_section(report: dict) -> tuple[Block, ...]:
    spec, net, schedule = report["spec"], report["network"], report["schedule"]
    items = [
        ("data set", cell(_dataset_line(report["dataset"]))),
        (
            "network",
            cell(
                f"{net['sizes']} ({', '.join(net['activations'])}), loss {net['loss']}, "
                f"{net['parameters']} parameters{_layers_line(spec)}"
            ),
        ),
        ("optimizer", cell(_optimizer_line(spec))),
        (
            "schedule",
            cell(
                f"batch {spec['batch_size']}, {spec['epochs']} epochs, {schedule['steps']} "
                f"steps (last batch {schedule['last_batch_rows']} rows); seed {spec['seed']}; "
                f"{spec['dtype']}"
            ),
        ),
        ("batch schedule sha256", cell(report["schedule_sha256"], code=True)),
        ("engines", cell(", ".join(report["engines"]))),
    ]
    if report.get("created"):
        items.append(("created", cell(report["created"])))
    blocks: list[Block] = [Facts(tuple(items))]
    files = [
        row(split, info["file"], cell(info["rows"], True), cell(info["sha256"], code=True))
        for split, info in (report["dataset"].get("splits") or {}).items()
        if "file" in info
    ]
    if files:
        blocks.append(table(["split", "file", ("rows", True), "sha256"], files))
    return tuple(blocks)


def _layers_line(spec: dict) -> str:
    """Batch normalization and dropout in the hidden layers, where the run has them."""
    text = ""
    if spec.get("batch_norm"):
        text += f"; batch normalization (momentum {spec['bn_momentum']}, ε {spec['bn_eps']})"
    if spec.get("dropout"):
        text += f"; dropout p = {spec['dropout']}"
    return text


def _optimizer_line(spec: dict) -> str:
    """The optimizer with the settings it uses."""
    names = ("lr", *OPTIMIZER_SETTINGS.get(spec["optimizer"], ()))
    names += ("l2",) if spec.get("l2") else ()
    return " ".join([spec["optimizer"], *(f"{k}={spec[k]}" for k in names if k in spec)])


def _dataset_line(dataset: dict) -> str:
    """The data set's name, and where it comes from as plain text (never a link to load)."""
    text = dataset["name"]
    if dataset.get("url"):
        text += f" (from {dataset['url']})"
    if dataset.get("splits"):
        rows = ", ".join(f"{s} {i['rows']}" for s, i in dataset["splits"].items() if "rows" in i)
        text += f"; rows: {rows}"
    return text


def walkthrough_section(report: dict) -> tuple[Block, ...]:
    engines = list(report["engines"])
    refs = engines[1:]  # the engine under test comes first
    first_bad = report.get("first_divergence") or {}
    bad_tensor = first_bad.get("tensor") if first_bad.get("step") == 0 else None
    rows, stage = [], None
    for entry in report["walkthrough"]:
        first = entry["stage"] != stage
        stage = entry["stage"]
        values = [
            Cell(numeric=True, lines=tuple(fmt(v, 6) for v in entry["values"].get(e, [])))
            for e in engines
        ]
        diffs = [cell(fmt(entry["max_abs_vs_under_test"].get(e)), True) for e in refs]
        shape = "×".join(map(str, entry["shape"])) or "scalar"
        rows.append(
            row(
                stage if first else "",
                cell(entry["equation"], code=True),
                cell(shape, True),
                *values,
                *diffs,
                fail=entry["tensor"] == bad_tensor,
                group=first and bool(rows),
            )
        )
    columns: list[str | tuple[str, bool]] = ["stage", "equation", ("shape", True)]
    columns += [(e, True) for e in engines] + [(f"max |diff| {e}", True) for e in refs]
    intro = Paragraph(
        "Step 0 of the run: each tensor's equation, shape, its first numbers in every engine "
        f"(one column per engine) and the largest |difference| from {under_test(report)} over "
        "the tensor. "
        "The first divergent tensor, when it diverges at this step, is marked."
    )
    return intro, table(columns, rows)


def metrics_section(report: dict) -> tuple[Block, ...]:
    metrics = report["metrics"]
    splits = list(next(iter(metrics.values())))
    rows = [
        row(
            engine,
            *(cell(percent(m[s]["accuracy"]), True) for s in splits),
            *(cell(fmt(m[s]["loss"], 6), True) for s in splits),
        )
        for engine, m in metrics.items()
    ]
    columns = ["engine", *((f"accuracy {s}", True) for s in splits)]
    columns += [(f"loss {s}", True) for s in splits]
    return (table(columns, rows),)


def per_tensor_section(report: dict) -> tuple[Block, ...]:
    intro = Paragraph(
        f"Over all steps: the largest |{under_test(report)} − reference| (absolute, and "
        "relative to the "
        "tensor's largest entry) and the largest fraction of the allowance used (≤ 1 passes). "
        "Rows beyond tolerance are marked."
    )
    rows: list[Row] = []
    for engine, tensors in (report.get("per_tensor") or {}).items():
        for i, (tensor, w) in enumerate(tensors.items()):
            ok = bool(w["ok"])
            rows.append(
                row(
                    engine,
                    tensor,
                    w["kind"],
                    cell(fmt(w["max_abs"]), True),
                    cell(fmt(w["max_rel"]), True),
                    cell(fmt(w["ratio"]), True, fail=not ok),
                    cell(fmt(w["worst_step"]), True),
                    cell("ok" if ok else "FAIL", fail=not ok),
                    fail=not ok,
                    group=i == 0 and bool(rows),
                )
            )
    if not rows:
        return intro, Paragraph("No reference engine in this run: nothing was compared.", True)
    columns = ["engine", "tensor", "kind", ("max abs", True), ("max rel", True)]
    columns += [("of allowance", True), ("at step", True), "status"]
    return intro, table(columns, rows)


def drift_section(report: dict) -> tuple[Block, ...]:
    blocks: list[Block] = []
    ours = under_test(report)
    if report["per_step"]:
        last = report["per_step"][-1]
        blocks.append(
            Paragraph(
                f"Parameter drift after the last step ({last['step']}): max over parameters of "
                f"‖θ_ref − θ_{ours}‖∞ / ‖θ_{ours}‖∞."
            )
        )
        rows = [row(e, cell(fmt(d), True)) for e, d in last["param_drift"].items()]
        if rows:
            blocks.append(table(["engine", ("parameter drift", True)], rows))
        else:
            blocks.append(Paragraph("No reference engine in this run: nothing drifted.", True))
    if report.get("drift_tolerance"):
        tol = report["drift_tolerance"]
        blocks.append(
            Paragraph(
                "The verdict: the engines agree when every reference's final loss on every "
                f"split is within a relative {fmt(tol['rtol'])} of {ours}'s ({tol['reason']})."
            )
        )
    return tuple(blocks)


def gradcheck_section(report: dict) -> tuple[Block, ...]:
    per_step = report["per_step"]
    tensors = list(dict.fromkeys(t for s in per_step for t in s["max_rel"]))
    tol = report.get("finite_difference_tolerance")
    # max_rel is relative to the tensor's largest entry, so above rtol + atol means failed
    limit = number(tol["rtol"]) + number(tol["atol"]) if tol else math.inf
    rows = []
    for tensor in tensors:
        values = [s["max_rel"].get(tensor) for s in per_step]
        cells = [cell(fmt(v), True, fail=v is not None and not number(v) <= limit) for v in values]
        rows.append(row(tensor, *cells))
    blocks: list[Block] = [
        Paragraph(
            "Max |backprop − central difference| relative to each tensor's largest entry, "
            "per tensor (rows) and checked step (columns)."
        ),
        table(["tensor", *((f"step {s['step']}", True) for s in per_step)], rows),
    ]
    if tol:
        blocks.append(
            Paragraph(
                f"Allowed: |backprop − fd| ≤ {fmt(tol['rtol'])}·|fd| + "
                f"{fmt(tol['atol'])}·max|fd| ({tol['reason']}); a marked cell is beyond it."
            )
        )
    return tuple(blocks)


def check_section(report: dict) -> tuple[Block, ...]:
    """One row per case: its verdict, how far it ran, and where it first failed."""
    rows = []
    for c in report["cases"]:
        d = c.get("first_divergence") or {}
        where = c.get("error") or c.get("diverged") or {}
        found = d.get("tensor", "") and f"{d['tensor']} at step {d.get('step')}"
        found = found or where.get("description", "")
        ok = c["verdict"] == "agree"
        rows.append(
            row(
                c["name"],
                c["dtype"],
                cell(c["verdict"], fail=not ok),
                cell(f"{c['steps_run']} / {c['steps']}", True),
                cell({None: "—"}.get(c.get("gradcheck"), c.get("gradcheck"))),
                found or "—",
                cell(d.get("look_at") or "—", code=bool(d.get("look_at"))),
                fail=not ok,
            )
        )
    intro = Paragraph(
        f"Short lockstep runs that together hold every pair of option values the run spec "
        "allows (comparisons/run/coverage.py), each stopped at its first divergence; finite "
        f"differences at the first steps of every float64 case; and a drift run of "
        f"{under_test(report)} training freely against the references' free-running loops."
    )
    columns = ["case", "dtype", "verdict", ("steps run", True), "finite differences"]
    columns += ["first found", "look at"]
    return intro, table(columns, rows)


def tolerance_section(report: dict, dtype: str) -> tuple[Block, ...]:
    table_ = report["tolerances"][dtype]
    r, fallback = table_["roundoff"], table_["fallback"]
    rows = [
        row(
            "every computed tensor",
            f"{fmt(r['safety'])} × first-order roundoff bound (u = {fmt(r['unit'])}, "
            f"library functions {fmt(r['library_ulps'])} ulps)",
            r["reason"],
        ),
        *(row(kind, "0 (exact)", reason) for kind, reason in table_["exact"].items()),
        row(
            "a tensor without a roundoff rule",
            f"{fmt(fallback['rtol'])}·|b| + {fmt(fallback['atol'])}·max|b|",
            fallback["reason"],
        ),
    ]
    intro = Paragraph(
        f"An element passes when |{under_test(report)} − reference| is within its allowance. "
        "For a computed tensor the allowance is the roundoff bound of the operations that "
        f"compute it, evaluated on {under_test(report)}'s own operands (γ_n·|A|ᵀ|dZ| for dW, "
        "γ_n·Σ|dZ| for db, γ_n·|A||W| for Z, carried through every layer), so it scales with "
        "the terms of a sum, not with its result."
    )
    return intro, table(["applies to", "allowance", "why"], rows)


def _inline(value: Any) -> str:
    """A nested value from the environment as compact text: ``k=v, k=v``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "—" if value is None else str(value)


def environment_section(report: dict) -> tuple[Block, ...]:
    env = report["environment"]
    blas = env.get("blas") or {}
    items = [
        (
            "Python",
            f"{env.get('python')} on {env.get('os')} ({env.get('machine')}, "
            f"{env.get('cpu')}, {env.get('cpu_count')} CPUs)",
        ),
        ("device", env.get("device")),
        ("NumPy", env.get("numpy")),
        ("BLAS", f"{blas.get('name')} {blas.get('version')}"),
        ("thread variables", _inline(env.get("thread_variables") or {})),
    ]
    items += [(f, _inline(env[f])) for f in ("torch", "jax") if env.get(f)]
    blocks: list[Block] = [Facts(tuple((k, cell(v)) for k, v in items))]
    pools = blas.get("threadpools") or []
    if blas.get("threadpools_note"):
        blocks.append(Paragraph(f"BLAS thread pools: {blas['threadpools_note']}", note=True))
    if pools:
        keys = list(dict.fromkeys(k for pool in pools for k in pool))
        rows = [row(*(_inline(pool.get(k)) for k in keys)) for pool in pools]
        blocks.append(table(keys, rows, caption="BLAS and OpenMP thread pools"))
    return tuple(blocks)
