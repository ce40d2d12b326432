"""The report: one JSON-ready dict per run, the source of truth for report.md and report.html.

The fields follow DESIGN.md's report contract (``schema_version`` 1). Everything in it is a
deterministic function of the run spec and the machine's libraries, except the fields named
in ``VOLATILE``; two runs of the same spec differ in those only.
"""

from __future__ import annotations

import datetime
from typing import Any

from comparisons.oracle.drift import DriftResult
from comparisons.oracle.lockstep import LockstepResult
from comparisons.oracle.tolerances import table_as_dict
from comparisons.run.inputs import RunInputs
from scratch.trace_schema import kind_of, layer_of

SCHEMA_VERSION = 1
VOLATILE = ("created", "timings")  # timestamps and durations: the only fields that may vary


def base_report(mode: str, inputs: RunInputs, environment: dict, timings: dict) -> dict[str, Any]:
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
        "engines": list(inputs.spec.engines),
        "tolerances": table_as_dict(),
    }


def lockstep_report(
    inputs: RunInputs,
    result: LockstepResult,
    metrics: dict,
    walkthrough: list[dict],
    environment: dict,
    timings: dict,
) -> dict[str, Any]:
    report = base_report("lockstep", inputs, environment, timings)
    report["verdict"] = "agree" if result.agree else "disagree"
    report["first_divergence"] = (
        result.first_divergence.as_dict() if result.first_divergence else None
    )
    report["steps_run"] = result.steps_run
    report["divergent_steps"] = result.divergent_steps
    report["per_tensor"] = {
        engine: {
            tensor: {
                "kind": kind_of(tensor),
                "layer": layer_of(tensor),
                "max_abs": w.max_abs,
                "max_rel": w.max_rel,
                "ratio": w.ratio,
                "worst_step": w.step,
                "ok": w.ok,
            }
            for tensor, w in tensors.items()
        }
        for engine, tensors in result.per_tensor.items()
    }
    report["per_step"] = result.per_step
    report["metrics"] = metrics
    report["walkthrough"] = walkthrough
    return report


def drift_report(
    inputs: RunInputs,
    result: DriftResult,
    metrics: dict,
    verdict: dict,
    environment: dict,
    timings: dict,
) -> dict[str, Any]:
    report = base_report("drift", inputs, environment, timings)
    report["verdict"] = "agree" if verdict["agree"] else "disagree"
    report["first_divergence"] = None if verdict["agree"] else verdict["worst"]
    report["drift_tolerance"] = verdict["tolerance"]
    report["per_step"] = result.per_step
    report["metrics"] = metrics
    return report
