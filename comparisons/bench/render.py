"""``bench.md`` (the machine, the targets and every table) and ``bench.svg`` (the plots)."""

from __future__ import annotations

import io

import numpy as np

from comparisons.bench.optional import load
from comparisons.bench.settings import TARGET_BOUND_RATIO, TARGET_ORACLE_RATIO
from comparisons.bench.targets import median

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


def render_markdown(report: dict) -> str:
    engines = _engines(report)
    lines = [
        *_machine_and_targets(report),
        *_step_table(report, engines),
        *_bound_table(report, engines),
        *_oracle_table(report),
        *_main_job(report),
    ]
    if report.get("plot"):
        lines += ["", f"![the figures]({report['plot']})"]
    return "\n".join([*lines, ""])


def _machine_and_targets(report: dict) -> list[str]:
    m, t = report["machine"], report["threads"]
    return [
        "# Benchmarks: scratch, PyTorch and JAX per training step",
        "",
        f"{m['cpu']}, {m['cpu_count']} CPUs ({t['usable_cpus']} usable); "
        + ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("cpu", "cpu_count", "os")),
        "",
        f"Threads: {t['requested']} requested; torch intra-op {t.get('torch_intra_op', '–')}; "
        f"{t.get('xla', 'XLA: not used')}; thread pools: " + _pools(t["threadpools"]) + ".",
        "",
        "## Targets",
        "",
        *[f"- **{_met(x['met'])}** {x['target']}: {x['figure']}" for x in report["targets"]],
    ]


def _step_table(report: dict, engines: list[str]) -> list[str]:
    lines = [
        "",
        "## Time per training step",
        "",
        "Median (min–max) milliseconds of one step (forward, backward, update) on a fixed "
        "batch, after a warm-up; bare steps, no trace recorded.",
        "",
        "| size | dtype | " + " | ".join(engines) + " | torch / scratch | jax / scratch |",
        "|---|---|" + "---|" * len(engines) + "---|---|",
    ]
    for row in report["steps"]:
        scratch = median(row, "scratch")
        ratios = [
            f"{median(row, e) / scratch:.2f}×" if median(row, e) and scratch else "–"
            for e in ("torch", "jax")
        ]
        cells = [_ms(row["engines"].get(e)) for e in engines]
        lines.append(f"| {row['label']} | {row['dtype']} | " + " | ".join(cells + ratios) + " |")
    return lines


def _bound_table(report: dict, engines: list[str]) -> list[str]:
    lines = [
        "",
        "## The machine's limit",
        "",
        "GFLOP/s of each engine's step, counting only its matrix products, against the same "
        "products timed alone in NumPy (the bound).",
        "",
        "| size | dtype | GFLOP / step | bare matmuls (ms) | bound GFLOP/s | "
        + " | ".join(engines)
        + " | scratch / bound |",
        "|---|---|---|---|---|" + "---|" * len(engines) + "---|",
    ]
    for row in report["steps"]:
        bound, scratch = row["matmul_bound"], median(row, "scratch")
        cells = [
            f"{row['engines'][e]['gflops']:.3g}" if "gflops" in row["engines"].get(e, {}) else "–"
            for e in engines
        ]
        ratio = f"{scratch / bound['median_s']:.2f}×" if scratch else "–"
        lines.append(
            f"| {row['label']} | {row['dtype']} | {row['matmul_flops'] / 1e9:.3g} | "
            f"{_ms(bound)} | {bound['gflops']:.3g} | " + " | ".join([*cells, ratio]) + " |"
        )
    return lines


def _oracle_table(report: dict) -> list[str]:
    if not report["oracle"]:
        return []
    lines = [
        "",
        "## The oracle's cost",
        "",
        "A lockstep run (float64; the default model's settings on synthetic data, batches "
        "of 50) against the sum of the engines' bare training time over the same steps, in "
        "milliseconds per step, and where the lockstep time went; the heap peak of a "
        "whole-run report (tracemalloc: Python objects and NumPy arrays, not the "
        "frameworks' own buffers) and the size of its report.json.",
        "",
        "| network | steps | lockstep | bare engines | ratio | scratch | references: load "
        "state, step, trace to NumPy | comparison and bookkeeping | report peak (MiB) | "
        "report.json (KiB) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["oracle"]:
        per_step = {k: 1e3 * v / row["steps"] for k, v in row["breakdown_s"].items()}
        traced = sum(v for k, v in per_step.items() if k.endswith("trace to NumPy"))
        lines.append(
            f"| {'-'.join(map(str, row['sizes']))} | {row['steps']} | "
            f"{1e3 * row['lockstep_s'] / row['steps']:.3g} | "
            f"{1e3 * row['bare_total_s'] / row['steps']:.3g} | {row['ratio']:.2f}× | "
            f"{per_step['scratch (bare)']:.3g} | {traced:.3g} | "
            f"{per_step['comparison and bookkeeping']:.3g} | {row['report_peak_mib']:.1f} | "
            f"{row['report_json_kib']:.0f} | {'agree' if row['agree'] else 'DISAGREE'} |"
        )
    return lines


def _main_job(report: dict) -> list[str]:
    job = report["main_job"]
    if not job:
        return []
    return [
        "",
        "## The main job",
        "",
        f"`python -m comparisons run` on Occupancy: {job['wall_s']:.1f} s from start to exit "
        f"(exit status {job['exit_status']}; the run itself "
        f"{job['timings'].get('run_s', float('nan')):.1f} s). {job['first_line']}",
    ]


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
    labels = [f"{'-'.join(map(str, r['sizes']))}\n{r['steps']} steps" for r in oracle]
    ax.bar(range(len(labels)), [r["ratio"] for r in oracle], color="#495057")
    ax.axhline(TARGET_ORACLE_RATIO, color="#e03131", linestyle="--", label="target")
    ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylabel("lockstep / bare engines")
    ax.set_title("the oracle's cost: a lockstep run over the engines' own time")
    ax.legend(fontsize="small")
