"""The issue's targets, judged from the bench's figures: met, missed, or not measured."""

from __future__ import annotations

from collections.abc import Callable

from comparisons.bench.settings import (
    TARGET_BOUND_RATIO,
    TARGET_MAIN_JOB_S,
    TARGET_ORACLE_RATIO,
    TARGET_TORCH_RATIO,
)


def median(row: dict, engine: str) -> float | None:
    """``engine``'s median step time in a step-time row; None if it was not timed there."""
    return row["engines"].get(engine, {}).get("median_s")


def judge(report: dict) -> list[dict]:
    """Each of the issue's targets with its figures and whether it is met (None: not measured)."""
    out = []
    for row in report["steps"]:
        if row["size"] == "default":
            out += _against_the_frameworks(row)
    for row in report["steps"]:
        if row["wide"]:
            scratch = median(row, "scratch")
            out.append(
                _target(
                    f"{row['size']}, {row['dtype']}: scratch within {TARGET_BOUND_RATIO:g}× of "
                    "the bare-matmul bound",
                    scratch / row["matmul_bound"]["median_s"] if scratch else None,
                    lambda r: r <= TARGET_BOUND_RATIO,
                    "scratch / bare matmuls = {:.2f}×",
                )
            )
    for row in report["oracle"]:
        out.append(
            _target(
                f"lockstep overhead, {'-'.join(map(str, row['sizes']))}, {row['steps']} steps: "
                f"under {TARGET_ORACLE_RATIO:g}× the engines' own time",
                row["ratio"],
                lambda r: r < TARGET_ORACLE_RATIO,
                "lockstep / bare engines = {:.2f}×",
            )
        )
    job = report["main_job"]
    out.append(
        _target(
            f"the main job (tox -e report's run) under {TARGET_MAIN_JOB_S:g} s",
            job["wall_s"] if job and job["exit_status"] in (0, 1) else None,
            lambda s: s < TARGET_MAIN_JOB_S,
            "{:.1f} s",
        )
    )
    return out


def _against_the_frameworks(row: dict) -> list[dict]:
    """The default size's targets: scratch against PyTorch eager and JAX jit."""
    scratch, torch, jax = (median(row, e) for e in ("scratch", "torch", "jax"))
    return [
        _target(
            f"default size, {row['dtype']}: scratch ≥ {TARGET_TORCH_RATIO:g}× faster than "
            "PyTorch eager",
            torch / scratch if torch and scratch else None,
            lambda r: r >= TARGET_TORCH_RATIO,
            "torch eager / scratch = {:.2f}×",
        ),
        _target(
            f"default size, {row['dtype']}: scratch no slower than JAX jit",
            jax / scratch if jax and scratch else None,
            lambda r: r >= 1.0,
            "jax jit / scratch = {:.2f}×",
        ),
    ]


def _target(name: str, value: float | None, ok: Callable[[float], bool], fmt: str) -> dict:
    return {
        "target": name,
        "value": value,
        "met": None if value is None else bool(ok(value)),
        "figure": "not measured" if value is None else fmt.format(value),
    }


def target_lines(report: dict) -> list[str]:
    """One line per target, as the command prints them."""
    marks = {True: "MET   ", False: "MISSED", None: "  –   "}
    return [f"{marks[t['met']]} {t['target']}: {t['figure']}" for t in report["targets"]]
