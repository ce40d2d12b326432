"""The report: one JSON-ready dict per run, the source of truth for report.md and report.html.

The fields are those of ``comparisons/schemas/report.schema.json`` (``schema_version`` 2:
the engine under test is named by its own name, ``under_test.name``, wherever the report has
an entry per engine). Everything in it is a
deterministic function of the run spec and the machine's libraries, except the fields named
in ``VOLATILE``; two runs of the same spec differ in those only.
"""

from __future__ import annotations

import datetime
from typing import Any

from comparisons.oracle.compare import kind_or_unknown, layer_or_none
from comparisons.oracle.drift import DriftResult
from comparisons.oracle.lockstep import LockstepResult
from comparisons.oracle.tolerances import DRIFT, table_as_dict
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import UnderTest

SCHEMA_VERSION = 2
VOLATILE = ("created", "timings")  # timestamps and durations: the only fields that may vary


def base_report(
    mode: str, inputs: RunInputs, environment: dict, timings: dict, under_test: UnderTest
) -> dict[str, Any]:
    """The fields every report of one run has; ``engines``: the engine under test (by its
    name), then the references."""
    schedule = inputs.schedule
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": mode,
        "verdict": None,  # filled in by the mode
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "timings": timings,
        "spec": inputs.spec.to_dict(),
        "network": {
            "sizes": list(inputs.mlp.sizes),
            "activations": [inputs.mlp.activation_of(l) for l in range(1, len(inputs.mlp.sizes))],
            "loss": inputs.mlp.loss,
            "parameters": int(sum(v.size for v in inputs.params0.values())),
        },
        "dataset": inputs.dataset,
        "schedule": {
            "steps": len(schedule),
            "steps_per_epoch": schedule.steps_per_epoch,
            "batch_size": schedule.batch_size,
            "last_batch_rows": len(schedule.steps[-1].rows),
        },
        "schedule_sha256": schedule.sha256,
        "environment": environment,
        "engines": [under_test.name, *inputs.spec.engines],
        "under_test": under_test.describe(),
        "tolerances": table_as_dict(),
    }


def lockstep_report(
    inputs: RunInputs,
    result: LockstepResult,
    metrics: dict,
    walkthrough: list[dict],
    environment: dict,
    timings: dict,
    under_test: UnderTest,
) -> dict[str, Any]:
    report = base_report("lockstep", inputs, environment, timings, under_test)
    report["verdict"] = result.verdict
    report["first_divergence"] = (
        result.first_divergence.as_dict() if result.first_divergence else None
    )
    report["diverged"] = result.diverged.as_dict() if result.diverged else None
    report["error"] = result.failure.as_dict() if result.failure else None
    report["steps_run"] = result.steps_run
    report["divergent_steps"] = result.divergent_steps
    report["not_provided"] = result.not_provided
    report["per_tensor"] = {
        engine: {
            tensor: {
                "kind": kind_or_unknown(tensor),
                "layer": layer_or_none(tensor),
                "max_abs": w.max_abs,
                "max_rel": w.max_rel,
                "ratio": w.ratio,
                "worst_step": w.step,
                "ok": w.ok,
            }
            for tensor, w in table.items().items()
        }
        for engine, table in result.per_tensor.items()
    }
    report["per_step"] = result.per_step
    report["metrics"] = metrics if result.verdict in ("agree", "disagree") else None
    report["metrics_note"] = _metrics_note(result)
    report["walkthrough"] = walkthrough
    return report


def _metrics_note(result: LockstepResult) -> str:
    """Why a run has no final metrics: accuracies of a diverged or stopped run mean nothing."""
    if result.diverged is not None:
        return f"no metrics: training diverged at step {result.diverged.step}"
    if result.failure is not None:
        return f"no metrics: {result.failure.engine} raised at step {result.failure.step}"
    return ""


def drift_report(
    inputs: RunInputs,
    result: DriftResult,
    metrics: dict | None,
    verdict: dict | None,
    environment: dict,
    timings: dict,
    decided: str,
    under_test: UnderTest,
) -> dict[str, Any]:
    """Drift's report; ``decided``: its verdict (``oracle/drift.py:drift_decision``),
    ``verdict``: the final losses' comparison, where the run went to its end."""
    report = base_report("drift", inputs, environment, timings, under_test)
    report["verdict"] = decided
    if decided != "disagree":
        report["first_divergence"] = None
    else:
        report["first_divergence"] = result.first_divergence or verdict["worst"]
    report["diverged"] = result.diverged
    report["error"] = result.failure.as_dict() if result.failure else None
    report["drift_tolerance"] = vars(DRIFT[inputs.spec.dtype])
    report["per_step"] = result.per_step
    report["metrics"] = metrics
    report["metrics_note"] = "" if metrics else "no metrics: the run stopped early"
    return report
