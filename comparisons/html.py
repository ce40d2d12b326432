"""report.html from a report dict: the sections of report.md, with the plots embedded.

One self-contained HTML5 file: inline CSS, every plot a ``data:`` PNG, no script and nothing
that a browser would fetch, so the page opens the same offline, from a CI artifact or mail.
The verdict and the first divergence come first, in the words of ``comparisons.render``;
every piece of text from the report is escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from comparisons.render import _g, first_divergence_lines, verdict_line

if TYPE_CHECKING:
    from comparisons.plots import Plot

NO_MATPLOTLIB = "No plots: matplotlib is not installed (pip install '.[reports]')."

CSS = """
:root { --ok: #2b8a3e; --ok-bg: #ebfbee; --bad: #c92a2a; --bad-bg: #fff5f5; --line: #dee2e6;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
* { box-sizing: border-box; }
body { margin: 0; color: #212529; background: #fff; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 68rem; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
h2 { font-size: 1.25rem; margin: 2.25rem 0 .75rem; padding-bottom: .25rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
p, li { max-width: 52rem; }
code, pre, .num { font-family: var(--mono); font-size: .85rem; }
.verdict { border: 2px solid; border-left-width: .6rem; border-radius: .4rem;
  padding: .75rem 1rem; margin: 0 0 1rem; }
.verdict.agree { border-color: var(--ok); background: var(--ok-bg); }
.verdict.disagree { border-color: var(--bad); background: var(--bad-bg); }
.verdict .line { font-size: 1.15rem; font-weight: 700; margin: 0; }
.verdict.agree .line { color: var(--ok); }
.verdict.disagree .line { color: var(--bad); }
.verdict pre { margin: .6rem 0 0; white-space: pre-wrap; overflow-wrap: anywhere; }
nav { font-size: .9rem; color: #495057; }
nav a { color: #1864ab; margin-right: .9rem; white-space: nowrap; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .9rem; }
caption { caption-side: top; text-align: left; color: #495057; padding: 0 0 .35rem; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top;
  text-align: left; }
thead th { background: #e9ecef; border-bottom: 2px solid #adb5bd; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8f9fa; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th.num { font-family: inherit; font-size: inherit; }
td.eq { min-width: 15rem; }
tr.fail, tr.fail:nth-child(even) { background: #ffe3e3; }
td.fail { background: #ffc9c9; font-weight: 700; color: var(--bad); }
tr.group td { border-top: 2px solid #adb5bd; }
.status-ok { color: var(--ok); }
.status-fail { color: var(--bad); font-weight: 700; }
figure { margin: 1rem 0 2rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: .9rem; color: #495057; margin-top: .4rem; max-width: 52rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.facts dt { font-weight: 600; color: #495057; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.note { color: #495057; font-size: .9rem; }
"""


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


def _plots(report: dict) -> tuple[list[Plot], str]:
    """The report's plots, or none and a note where matplotlib (an optional extra) is absent:
    a report without plots beats losing the whole report folder at the end of a run."""
    try:
        from comparisons.plots import plots_for
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "matplotlib":
            raise
        return [], NO_MATPLOTLIB
    return plots_for(report), ""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 3) -> str:
    """A number for a table cell: 3 significant digits, as report.md writes them."""
    if x is None:
        return "—"
    return _g(x, digits)  # floats formatted; ints, and "NaN"/"Infinity" from JSON, as they are


def _pct(x: Any) -> str:
    value = number(x)
    return f"{100 * value:.2f}%" if math.isfinite(value) else str(x)


class Cell:
    """A table cell: text (escaped on output), whether it is a number, an optional class."""

    def __init__(self, text: Any, num: bool = False, cls: str = "", raw: bool = False):
        self.html = str(text) if raw else _e(text)
        self.classes = " ".join(c for c in ("num" if num else "", cls) if c)

    def td(self) -> str:
        attr = f' class="{self.classes}"' if self.classes else ""
        return f"<td{attr}>{self.html}</td>"


def _n(x: Any, digits: int = 3) -> Cell:
    return Cell(_num(x, digits), num=True)


def _table(
    header: list[str | tuple[str, bool]],
    rows: Iterable[tuple[list[Any], str]],
    caption: str = "",
) -> str:
    """A table: header names (``(name, True)`` for a numeric column) and ``(cells, row
    class)`` pairs; a cell is a Cell or plain text."""
    head = "".join(
        f'<th class="num">{_e(h[0])}</th>' if isinstance(h, tuple) and h[1] else f"<th>{_e(h)}</th>"
        for h in header
    )
    body = []
    for cells, cls in rows:
        tds = "".join(c.td() if isinstance(c, Cell) else Cell(c).td() for c in cells)
        attr = f' class="{cls}"' if cls else ""
        body.append(f"<tr{attr}>{tds}</tr>")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _section(anchor: str, title: str, *parts: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>{"".join(parts)}</section>'


def _p(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{_e(text)}</p>"


def _facts(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; the values are already HTML."""
    body = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="facts">{body}</dl>'


def render_html(report: dict) -> str:
    """The whole report as one self-contained HTML5 document."""
    mode = report["mode"]
    plots, plots_note = _plots(report)
    sections = [("run", "Run", _run(report))]
    if report.get("walkthrough"):
        sections.append(
            ("walkthrough", "The first mini-batch, equation by equation", _walk(report))
        )
    if report.get("metrics"):
        sections.append(("metrics", "Final metrics", _metrics(report)))
    if plots or plots_note:
        figures = "".join(_figure(p) for p in plots) or _p(plots_note, "note")
        sections.append(("plots", "Plots", figures))
    if mode == "lockstep":
        sections.append(("per-tensor", "Worst error per tensor", _per_tensor(report)))
    if mode == "drift":
        sections.append(("drift", "Drift", _drift(report)))
    if mode == "gradcheck":
        sections.append(("finite-differences", "Finite differences", _gradcheck(report)))
    dtype = report["spec"]["dtype"]
    sections.append(("tolerances", f"Tolerances ({dtype})", _tolerances(report)))
    sections.append(("environment", "Environment", _environment(report)))

    nav = " ".join(f'<a href="#{_e(a)}">{_e(t)}</a>' for a, t, _ in sections)
    title = f"Backprop oracle report: {mode}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)} — {_e(report['verdict'])}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(title)}</h1>\n{_verdict(report)}\n<nav>{nav}</nav>\n"
        + "\n".join(_section(a, t, body) for a, t, body in sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def _verdict(report: dict) -> str:
    agree = report["verdict"] == "agree"
    lines = first_divergence_lines(report)
    detail = f"<pre>{_e(chr(10).join(lines))}</pre>" if lines else ""
    return (
        f'<section class="verdict {"agree" if agree else "disagree"}" role="status">'
        f'<p class="line">{_e(verdict_line(report))}</p>{detail}</section>'
    )


def _run(report: dict) -> str:
    spec, net, schedule = report["spec"], report["network"], report["schedule"]
    dataset = report["dataset"]
    items = [
        ("data set", _e(_dataset_line(dataset))),
        (
            "network",
            f"<code>{_e(net['sizes'])}</code> ({_e(', '.join(net['activations']))}), "
            f"loss {_e(net['loss'])}, {_e(net['parameters'])} parameters",
        ),
        ("optimizer", _e(_optimizer_line(spec))),
        (
            "schedule",
            _e(
                f"batch {spec['batch_size']}, {spec['epochs']} epochs, {schedule['steps']} "
                f"steps (last batch {schedule['last_batch_rows']} rows); seed {spec['seed']}; "
                f"{spec['dtype']}"
            ),
        ),
        ("batch schedule sha256", f"<code>{_e(report['schedule_sha256'])}</code>"),
        ("engines", _e(", ".join(report["engines"]))),
    ]
    if report.get("created"):
        items.append(("created", _e(report["created"])))
    parts = [_facts(items)]
    files = [
        (
            [
                split,
                info["file"],
                _n(info["rows"]),
                Cell(f"<code>{_e(info['sha256'])}</code>", raw=True),
            ],
            "",
        )
        for split, info in (dataset.get("splits") or {}).items()
        if "file" in info
    ]
    if files:
        parts.append(_table(["split", "file", ("rows", True), "sha256"], files))
    return "".join(parts)


OPTIMIZER_SETTINGS = {
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "adam": ("beta1", "beta2", "eps"),
    "adamw": ("beta1", "beta2", "eps", "weight_decay"),
}


def _optimizer_line(spec: dict) -> str:
    """The optimizer with the settings it uses (report.md gives lr only)."""
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


def _walk(report: dict) -> str:
    engines = list(report["engines"])
    refs = [e for e in engines if e != "scratch"]
    first_bad = report.get("first_divergence") or {}
    bad_tensor = first_bad.get("tensor") if first_bad.get("step") == 0 else None
    rows, stage = [], None
    for row in report["walkthrough"]:
        first = row["stage"] != stage
        stage = row["stage"]
        values = [
            Cell("<br>".join(_e(_num(v, 6)) for v in row["values"].get(e, [])), num=True, raw=True)
            for e in engines
        ]
        diffs = [_n(row["max_abs_vs_scratch"].get(e)) for e in refs]
        shape = "×".join(map(str, row["shape"])) or "scalar"
        cells = [
            stage if first else "",
            Cell(f"<code>{_e(row['equation'])}</code>", cls="eq", raw=True),
            Cell(shape, num=True),
            *values,
            *diffs,
        ]
        classes = ("group" if first and rows else "", "fail" if row["tensor"] == bad_tensor else "")
        rows.append((cells, " ".join(c for c in classes if c)))
    header = ["stage", "equation", ("shape", True)]
    header += [(e, True) for e in engines]
    header += [(f"max |diff| {e}", True) for e in refs]
    return _p(
        "Step 0 of the run: each tensor's equation, shape, its first numbers in every engine "
        "(one column per engine) and the largest |difference| from scratch over the tensor. "
        "The first divergent tensor, when it diverges at this step, is highlighted."
    ) + _table(header, rows)


def _metrics(report: dict) -> str:
    metrics = report["metrics"]
    splits = list(next(iter(metrics.values())))
    rows = [
        (
            [engine]
            + [Cell(_pct(m[s]["accuracy"]), num=True) for s in splits]
            + [_n(m[s]["loss"], 6) for s in splits],
            "",
        )
        for engine, m in metrics.items()
    ]
    header = ["engine", *[(f"accuracy {s}", True) for s in splits]]
    header += [(f"loss {s}", True) for s in splits]
    return _table(header, rows)


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _figure(plot: Plot) -> str:
    width, height = _png_size(plot.png)
    data = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure id="plot-{_e(plot.key)}"><h3>{_e(plot.title)}</h3>'
        f'<img src="data:image/png;base64,{data}" alt="{_e(plot.alt)}" '
        f'width="{width}" height="{height}">'
        f"<figcaption>{_e(plot.caption)}</figcaption></figure>"
    )


def _per_tensor(report: dict) -> str:
    intro = _p(
        "Over all steps: the largest |scratch − reference| (absolute, and relative to the "
        "tensor's largest entry) and the largest fraction of the allowance used (≤ 1 passes). "
        "Rows beyond tolerance are highlighted."
    )
    rows = []
    for engine, tensors in (report.get("per_tensor") or {}).items():
        for i, (tensor, w) in enumerate(tensors.items()):
            ok = bool(w["ok"])
            rows.append(
                (
                    [
                        engine,
                        Cell(tensor, cls="tensor"),
                        w["kind"],
                        _n(w["max_abs"]),
                        _n(w["max_rel"]),
                        Cell(_num(w["ratio"]), num=True, cls="" if ok else "fail"),
                        _n(w["worst_step"]),
                        Cell("ok" if ok else "FAIL", cls="status-ok" if ok else "status-fail"),
                    ],
                    " ".join(
                        c for c in ("" if ok else "fail", "group" if i == 0 and rows else "") if c
                    ),
                )
            )
    if not rows:
        return intro + _p("No reference engine in this run: nothing was compared.", "note")
    header = ["engine", "tensor", "kind", ("max abs", True), ("max rel", True)]
    header += [("of allowance", True), ("at step", True), "status"]
    return intro + _table(header, rows)


def _drift(report: dict) -> str:
    parts = []
    if report["per_step"]:
        last = report["per_step"][-1]
        parts.append(
            _p(
                f"Parameter drift after the last step ({last['step']}): max over parameters of "
                "‖θ_ref − θ_scratch‖∞ / ‖θ_scratch‖∞."
            )
        )
        rows = [([e, _n(d)], "") for e, d in last["param_drift"].items()]
        if rows:
            parts.append(_table(["engine", ("parameter drift", True)], rows))
        else:
            parts.append(_p("No reference engine in this run: nothing drifted.", "note"))
    if report.get("drift_tolerance"):
        tol = report["drift_tolerance"]
        parts.append(
            _p(
                "The verdict: the engines agree when every reference's final loss on every "
                f"split is within a relative {_num(tol['rtol'])} of scratch's ({tol['reason']})."
            )
        )
    return "".join(parts)


def _gradcheck(report: dict) -> str:
    per_step = report["per_step"]
    tensors = list(dict.fromkeys(t for s in per_step for t in s["max_rel"]))
    tol = report.get("finite_difference_tolerance")
    # max_rel is relative to the tensor's largest entry, so above rtol + atol means failed
    limit = number(tol["rtol"]) + number(tol["atol"]) if tol else math.inf
    rows = []
    for tensor in tensors:
        cells: list[Any] = [Cell(tensor, cls="tensor")]
        for s in per_step:
            value = s["max_rel"].get(tensor)
            beyond = value is not None and not number(value) <= limit
            cells.append(Cell(_num(value), num=True, cls="fail" if beyond else ""))
        rows.append((cells, ""))
    parts = [
        _p(
            "Max |backprop − central difference| relative to each tensor's largest entry, "
            "per tensor (rows) and checked step (columns)."
        ),
        _table(["tensor", *[(f"step {s['step']}", True) for s in per_step]], rows),
    ]
    if tol:
        parts.append(
            _p(
                f"Allowed: |backprop − fd| ≤ {_num(tol['rtol'])}·|fd| + "
                f"{_num(tol['atol'])}·max|fd| ({tol['reason']}); a highlighted cell is beyond it."
            )
        )
    return "".join(parts)


def _tolerances(report: dict) -> str:
    dtype = report["spec"]["dtype"]
    rows = [
        ([kind, _n(t["rtol"]), _n(t["atol"]), _n(t["ulps"]), t["reason"]], "")
        for kind, t in report["tolerances"][dtype].items()
    ]
    return _p(
        "An element passes when |a − b| ≤ rtol·|b| + atol·max|b| + ulps·eps·|θ_old|."
    ) + _table(["kind", ("rtol", True), ("atol (× max|b|)", True), ("ulps", True), "why"], rows)


def _inline(value: Any) -> str:
    """A nested value from the environment as compact escaped text: ``k=v, k=v``."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_inline(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "—" if value is None else str(value)


def _environment(report: dict) -> str:
    env = report["environment"]
    blas = env.get("blas") or {}
    items = [
        (
            "Python",
            _e(
                f"{env.get('python')} on {env.get('os')} ({env.get('machine')}, "
                f"{env.get('cpu')}, {env.get('cpu_count')} CPUs)"
            ),
        ),
        ("device", _e(env.get("device"))),
        ("NumPy", _e(env.get("numpy"))),
        ("BLAS", _e(f"{blas.get('name')} {blas.get('version')}")),
        ("thread variables", _e(_inline(env.get("thread_variables") or {}))),
    ]
    for framework in ("torch", "jax"):
        if env.get(framework):
            items.append((framework, _e(_inline(env[framework]))))
    parts = [_facts(items)]
    pools = blas.get("threadpools") or []
    if pools:
        keys = list(dict.fromkeys(k for pool in pools for k in pool))
        rows = [([_inline(pool.get(k)) for k in keys], "") for pool in pools]
        parts.append(_table(keys, rows, caption="BLAS and OpenMP thread pools"))
    return "".join(parts)
