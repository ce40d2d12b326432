"""The issue's targets, judged from the bench's figures: met, missed, or not measured.

Each target carries a stable ``id``, its ``value`` (the ratio or seconds it is judged by) and
its ``threshold``, so that a later bench.json can be read against this one (``--compare``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from comparisons.bench.settings import (
    ORACLE_BATCH,
    TARGET_BOUND_RATIO,
    TARGET_MAIN_JOB_S,
    TARGET_ORACLE_RATIO,
    TARGET_TORCH_RATIO,
)


def device(report: dict) -> str:
    """Where the references' steps ran: "cpu" (also for a bench.json older than the option)
    or "gpu"."""
    return report.get("settings", {}).get("device", "cpu")


def median(row: dict, engine: str) -> float | None:
    """``engine``'s median step time in a step-time row; None if it was not timed there."""
    return row["engines"].get(engine, {}).get("median_s")


def judge(report: dict) -> list[dict]:
    """Each of the issue's targets with its figures and whether it is met (None: not measured)."""
    out = []
    for row in report["steps"]:
        # the targets against the frameworks are their CPU steps'; on a GPU they are figures
        if row["size"] == "default" and device(report) == "cpu":
            out += _against_the_frameworks(row)
    for row in report["steps"]:
        if row["wide"]:
            scratch = median(row, "scratch")
            out.append(
                _target(
                    f"bound/{row['size']}/{row['dtype']}",
                    f"{row['size']}, {row['dtype']}: scratch within {TARGET_BOUND_RATIO:g}× of "
                    "the bare-matmul bound",
                    scratch / row["matmul_bound"]["median_s"] if scratch else None,
                    ("<=", TARGET_BOUND_RATIO),
                    "scratch / bare matmuls = {:.2f}×",
                )
            )
    for row in report["oracle"]:
        network = oracle_network(row)
        out.append(
            _target(
                f"oracle/{network}/{row['steps']}",
                f"lockstep overhead, {network}, {row['steps']} steps: "
                f"at most {TARGET_ORACLE_RATIO:g}× the engines' own time",
                row["ratio"],
                ("<=", TARGET_ORACLE_RATIO),
                "lockstep / bare engines = {:.2f}×",
            )
        )
    job = report["main_job"]
    out.append(
        _target(
            "main-job",
            f"python -m comparisons run on Occupancy, imports included, within "
            f"{TARGET_MAIN_JOB_S:g} s",
            job["wall_s"] if job and job["exit_status"] in (0, 1) else None,
            ("<=", TARGET_MAIN_JOB_S),
            "{:.1f} s",
        )
    )
    return out


def oracle_network(row: dict) -> str:
    """An oracle run's network, with its batch where it is not the usual one: 5-8-4-1, or
    5-256-256-1@256 (a bench.json older than the batch's figure ran every width at 50)."""
    batch = row.get("batch", ORACLE_BATCH)
    return "-".join(map(str, row["sizes"])) + ("" if batch == ORACLE_BATCH else f"@{batch}")


def _against_the_frameworks(row: dict) -> list[dict]:
    """The default size's targets: scratch against PyTorch eager and JAX jit."""
    scratch, torch, jax = (median(row, e) for e in ("scratch", "torch", "jax"))
    return [
        _target(
            f"torch-eager/{row['dtype']}",
            f"default size, {row['dtype']}: scratch ≥ {TARGET_TORCH_RATIO:g}× faster than "
            "PyTorch eager",
            torch / scratch if torch and scratch else None,
            (">=", TARGET_TORCH_RATIO),
            "torch eager / scratch = {:.2f}×",
        ),
        _target(
            f"jax-jit/{row['dtype']}",
            f"default size, {row['dtype']}: scratch no slower than JAX jit",
            jax / scratch if jax and scratch else None,
            (">=", 1.0),
            "jax jit / scratch = {:.2f}×",
        ),
    ]


COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda value, limit: value <= limit,
    ">=": lambda value, limit: value >= limit,
}


def _target(
    id: str, name: str, value: float | None, threshold: tuple[str, float], fmt: str
) -> dict:
    op, limit = threshold
    return {
        "id": id,
        "target": name,
        "value": value,
        "threshold": {"op": op, "value": limit},
        "met": None if value is None else bool(COMPARE[op](value, limit)),
        "figure": "not measured" if value is None else fmt.format(value),
    }


def compare(targets: list[dict], previous: dict) -> None:
    """Give each target the value of the same target (by id) in ``previous`` bench.json's,
    and its change: ``better`` is True where the value moved towards the threshold's side."""
    before = {t.get("id"): t for t in previous.get("targets", []) if t.get("id")}
    for target in targets:
        old = before.get(target["id"])
        if not old or old.get("value") is None or target["value"] is None:
            continue
        change = target["value"] / old["value"] if old["value"] else math.inf
        better = change < 1 if target["threshold"]["op"] == "<=" else change > 1
        target["previous"] = {
            "value": old["value"],
            "figure": old["figure"],
            "met": old["met"],
            "change": change,
            "better": better if change != 1 else None,
        }


def target_lines(report: dict) -> list[str]:
    """One line per target, as the command prints them (with the previous figure, if any)."""
    marks = {True: "MET   ", False: "MISSED", None: "  –   "}
    lines = []
    for t in report["targets"]:
        line = f"{marks[t['met']]} {t['target']}: {t['figure']}"
        if "previous" in t:
            line += f" (before: {t['previous']['figure']}, ×{t['previous']['change']:.2f})"
        lines.append(line)
    return lines
