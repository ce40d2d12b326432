"""``bench.md`` (the machine, the targets and every table) and ``bench.svg`` (the plots)."""

from __future__ import annotations

import io

import numpy as np

from comparisons.bench.optional import load
from comparisons.bench.settings import TARGET_BOUND_RATIO, TARGET_ORACLE_RATIO
from comparisons.bench.targets import device, median, oracle_network
from comparisons.report import markdown
from comparisons.report.document import (
    Document,
    Paragraph,
    Section,
    Table,
    Verdict,
    cell,
    row,
    table,
)

ENGINE_COLORS = {
    "scratch": "#222222",
    "torch": "#d9480f",
    "torch.compile": "#f59f00",
    "jax": "#1c7ed6",
}


def _engines(report: dict) -> list[str]:
    """Every engine of the step-time rows, in the order they were first timed."""
    return list(dict.fromkeys(e for row in report["steps"] for e in row["engines"]))


def _ms(entry: dict | None) -> str:
    if not entry:
        return "–"
    if "median_s" not in entry:
        return entry.get("unavailable") or entry.get("skipped") or "–"
    return f"{_fmt_ms(entry['median_s'])} ({_fmt_ms(entry['min_s'])}–{_fmt_ms(entry['max_s'])})"


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _met(met: bool | None) -> str:
    return {True: "met", False: "missed", None: "not measured"}[met]


def _pools(pools) -> str:
    if isinstance(pools, str):
        return pools
    return ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in pools) or "none"


TITLE = "Benchmarks: scratch, PyTorch and JAX per training step"


def render_markdown(report: dict) -> str:
    """bench.md: the bench's document, written by the reports' Markdown writer."""
    return markdown.write(document(report))


def document(report: dict) -> Document:
    """bench.md's content, from bench.json's: the targets as its verdict, the machine, the
    targets one by one, then every table. The figures are bench.svg, linked from the last
    section (the one piece of Markdown here: only bench.md is written from this document)."""
    engines = _engines(report)
    sections = [
        Section("machine", "The machine", _machine(report)),
        Section("targets", "Targets", (_targets_table(report["targets"]),)),
        Section("steps", "Time per training step", _step_table(report, engines)),
        Section("bound", "The machine's limit", _bound_table(report, engines)),
    ]
    if report["oracle"]:
        sections.append(Section("oracle", "The oracle's cost", _oracle_table(report)))
    if report["main_job"]:
        sections.append(Section("main-job", "The main job", _main_job(report)))
    if report.get("plot"):
        figures = (Paragraph(f"![the figures]({report['plot']})"),)
        sections.append(Section("figures", "Figures", figures))
    return Document(TITLE, _verdict(report["targets"]), tuple(sections))


def _verdict(targets: list[dict]) -> Verdict:
    """All measured targets met, or how many were missed, and which (the lines under it)."""
    measured = [t for t in targets if t["met"] is not None]
    missed = [t for t in measured if not t["met"]]
    unmeasured = len(targets) - len(measured)
    counted = f"{len(measured)} measured target{'s' * (len(measured) != 1)}"
    if not measured:
        line = "No target measured."
    elif missed:
        line = f"{len(missed)} of {counted} missed"
    else:
        line = f"All {counted} met" if len(measured) > 1 else f"The {counted} met"
    if measured:
        line += f"; {unmeasured} not measured." if unmeasured else "."
    details = tuple(f"{t['target']}: {t['figure']}" for t in missed)
    return Verdict(line, not missed, details)


def _machine(report: dict) -> tuple[Paragraph, ...]:
    m, t = report["machine"], report["threads"]
    shown = {k: v for k, v in m.items() if k not in ("cpu", "cpu_count", "os", "gpu")}
    versions = ", ".join(f"{k} {v}" for k, v in shown.items())
    on_gpu = device(report) == "gpu"
    where = f"the references on the GPU, {m.get('gpu')}" if on_gpu else "all on the CPU"
    paragraphs = [
        Paragraph(
            f"{m['cpu']}, {m['cpu_count']} CPUs ({t['usable_cpus']} usable); {versions}; {where}"
        ),
        Paragraph(
            f"Threads: {t['requested']} requested; torch intra-op "
            f"{t.get('torch_intra_op', '–')}; {t.get('xla', 'XLA: not used')}; thread pools: "
            f"{_pools(t['threadpools'])}."
        ),
    ]
    peaks = report.get("peak") or {}
    if peaks:
        figures = "; ".join(
            f"{dtype} {p['gflops']:.3g} GFLOP/s ({p['n']}×{p['n']} @ {p['n']}×{p['n']} in "
            f"{_fmt_ms(p['median_s'])} ms)"
            for dtype, p in peaks.items()
        )
        paragraphs.append(Paragraph(f"The machine's peak, one large matmul in NumPy: {figures}."))
    return tuple(paragraphs)


def _targets_table(targets: list[dict]) -> Table:
    """One row per target; a missed one fails (bold in Markdown)."""
    compared = any("previous" in t for t in targets)
    rows = []
    for t in targets:
        before = [_before(t.get("previous"))] if compared else []
        rows.append(
            row(
                cell(_met(t["met"]), fail=t["met"] is False),
                t["target"],
                cell(t["figure"], fail=t["met"] is False),
                *before,
                fail=t["met"] is False,
            )
        )
    return table(["result", "target", "figure", *(["before"] if compared else [])], rows)


def _before(previous: dict | None) -> str:
    """The same target's figure in the compared bench.json, and which way it moved."""
    if not previous:
        return "–"
    way = {True: "better", False: "worse", None: "same"}[previous["better"]]
    return f"{previous['figure']} (now ×{previous['change']:.2f}, {way})"


def _step_table(report: dict, engines: list[str]) -> tuple[Paragraph, Table]:
    intro = Paragraph(
        "Median (min–max) milliseconds of one step (forward, backward, update) on a fixed "
        "batch, after a warm-up; bare steps, no trace recorded."
    )
    rows = []
    for r in report["steps"]:
        scratch = median(r, "scratch")
        ratios = [
            f"{median(r, e) / scratch:.2f}×" if median(r, e) and scratch else "–"
            for e in ("torch", "jax")
        ]
        cells = [_ms(r["engines"].get(e)) for e in engines] + ratios
        rows.append(row(r["label"], r["dtype"], *(cell(c, True) for c in cells)))
    columns = [
        "size",
        "dtype",
        *((c, True) for c in [*engines, "torch / scratch", "jax / scratch"]),
    ]
    return intro, table(columns, rows)


def _bound_table(report: dict, engines: list[str]) -> tuple[Paragraph, Table]:
    intro = Paragraph(
        "GFLOP/s of each engine's step, counting only its matrix products, against the same "
        "products timed alone in NumPy (the bound); in brackets, the share of the machine's "
        "peak (one large matmul of the same dtype)."
    )
    rows = []
    for r in report["steps"]:
        bound, scratch = r["matmul_bound"], median(r, "scratch")
        gflops = [_gflops(r["engines"].get(e, {})) for e in engines]
        ratio = f"{scratch / bound['median_s']:.2f}×" if scratch else "–"
        figures = [f"{r['matmul_flops'] / 1e9:.3g}", _ms(bound), _gflops(bound)]
        rows.append(
            row(r["label"], r["dtype"], *(cell(c, True) for c in [*figures, *gflops, ratio]))
        )
    names = ["GFLOP / step", "bare matmuls (ms)", "bound GFLOP/s", *engines, "scratch / bound"]
    return intro, table(["size", "dtype", *((c, True) for c in names)], rows)


def _gflops(timing: dict) -> str:
    """GFLOP/s, and the share of the machine's peak where it was measured."""
    if "gflops" not in timing:
        return "–"
    share = f" ({timing['peak_fraction']:.0%})" if "peak_fraction" in timing else ""
    return f"{timing['gflops']:.3g}{share}"


def _oracle_table(report: dict) -> tuple[Paragraph, Table]:
    batches = "batches of 50"
    if any("@" in oracle_network(r) for r in report["oracle"]):
        batches += ", or of the number after @"
    intro = Paragraph(
        f"A lockstep run (float64; the default model's settings on synthetic data, {batches}) "
        "against the sum of the engines' bare training time over the same steps, in "
        "milliseconds per step, and where the lockstep time went; the heap peak of a "
        "whole-run report (tracemalloc: Python objects and NumPy arrays, not the "
        "frameworks' own buffers) and the size of its report.json."
    )
    rows = []
    for r in report["oracle"]:
        n = r["steps"]
        per_step = {k: 1e3 * v / n for k, v in r["breakdown_s"].items()}
        traced = sum(v for k, v in per_step.items() if k.endswith("trace to NumPy"))
        figures = [
            n,
            f"{1e3 * r['lockstep_s'] / n:.3g}",
            f"{1e3 * r['bare_total_s'] / n:.3g}",
            f"{r['ratio']:.2f}×",
            f"{per_step['scratch (bare)']:.3g}",
            f"{traced:.3g}",
            f"{per_step['comparison and bookkeeping']:.3g}",
            f"{r['report_peak_mib']:.1f}",
            f"{r['report_json_kib']:.0f}",
        ]
        verdict = cell("agree" if r["agree"] else "DISAGREE", fail=not r["agree"])
        network = oracle_network(r)
        rows.append(row(network, *(cell(c, True) for c in figures), verdict, fail=not r["agree"]))
    names = ["steps", "lockstep", "bare engines", "ratio", "scratch"]
    names += ["references: load state, step, trace to NumPy", "comparison and bookkeeping"]
    names += ["report peak (MiB)", "report.json (KiB)"]
    return intro, table(["network", *((c, True) for c in names), "verdict"], rows)


def _main_job(report: dict) -> tuple[Paragraph]:
    job = report["main_job"]
    return (
        Paragraph(
            f"`python -m comparisons run` on Occupancy: {job['wall_s']:.1f} s from start to "
            f"exit (exit status {job['exit_status']}; the run itself "
            f"{job['timings'].get('run_s', float('nan')):.1f} s). {job['first_line']}"
        ),
    )


def render_svg(report: dict) -> str:
    """Step time per size and engine (log scale), GFLOP/s against the matmul bound, and the
    oracle's overhead ratio; an SVG page (text, so it is written like the other files).
    Needs matplotlib (the reports extra)."""
    figure = load("matplotlib.figure")
    backend_agg = load("matplotlib.backends.backend_agg")
    dtypes = list(dict.fromkeys(row["dtype"] for row in report["steps"]))
    panels = len(dtypes) + 1 + bool(report["oracle"])
    fig = figure.Figure(figsize=(8.0, 3.2 * panels))
    backend_agg.FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    engines = _engines(report)
    for ax, dtype in zip(axes, dtypes, strict=False):
        _step_panel(ax, [row for row in report["steps"] if row["dtype"] == dtype], engines, dtype)
    _bound_panel(axes[len(dtypes)], report["steps"], dtypes, engines)
    if report["oracle"]:
        _oracle_panel(axes[-1], report["oracle"])
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _step_panel(ax, rows: list[dict], engines: list[str], dtype: str) -> None:
    """Bars: milliseconds per step of the bare matmuls and of each engine, per size."""
    width = 0.8 / (len(engines) + 1)
    x = np.arange(len(rows))
    for i, engine in enumerate(["bare matmuls", *engines]):
        values = [
            row["matmul_bound"]["median_s"] if i == 0 else median(row, engine) or np.nan
            for row in rows
        ]
        color = "#adb5bd" if i == 0 else ENGINE_COLORS.get(engine, "#868e96")
        offset = (i - len(engines) / 2) * width
        ax.bar(x + offset, np.array(values) * 1e3, width, label=engine, color=color)
    ax.set_yscale("log")
    ax.set_xticks(x, [row["size"] for row in rows])
    ax.set_ylabel("ms per step")
    ax.set_title(f"time per training step, {dtype} (lower is better)")
    ax.legend(fontsize="small", ncols=3)


def _bound_panel(ax, steps: list[dict], dtypes: list[str], engines: list[str]) -> None:
    """Lines: the share of the bare-matmul bound each engine reaches, per size and dtype."""
    for row_dtype, style in zip(dtypes, ("-", "--"), strict=False):
        rows = [row for row in steps if row["dtype"] == row_dtype]
        x = np.arange(len(rows))
        for engine in engines:
            # the share of the bound reached: bare matmul time / the engine's step time
            values = [r["matmul_bound"]["median_s"] / (median(r, engine) or np.nan) for r in rows]
            color = ENGINE_COLORS.get(engine, "#868e96")
            ax.plot(x, values, style, marker="o", color=color, label=f"{engine}, {row_dtype}")
        ax.set_xticks(x, [r["size"] for r in rows])
    ax.axhline(1 / TARGET_BOUND_RATIO, color="#e03131", linestyle=":", label="target (wide)")
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("bare matmuls / step time")
    ax.set_title("share of the bare-matmul bound reached (FLOP/s over the bound's FLOP/s)")
    ax.legend(fontsize="x-small", ncols=3)


def _oracle_panel(ax, oracle: list[dict]) -> None:
    """Bars: each lockstep run's time over the engines' own time, against the target."""
    labels = [f"{oracle_network(r)}\n{r['steps']} steps" for r in oracle]
    ax.bar(range(len(labels)), [r["ratio"] for r in oracle], color="#495057")
    ax.axhline(TARGET_ORACLE_RATIO, color="#e03131", linestyle="--", label="target")
    ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylabel("lockstep / bare engines")
    ax.set_title("the oracle's cost: a lockstep run over the engines' own time")
    ax.legend(fontsize="small")
