"""Drift mode: free-running engines from the same start; the final losses decide."""

from __future__ import annotations

import time
from collections.abc import Callable

from comparisons.oracle.drift import drift, drift_verdict
from comparisons.oracle.metrics import evaluate
from comparisons.report.environment import fingerprint
from comparisons.report.model import drift_report
from comparisons.run.engines import ScratchEngine, make_references
from comparisons.run.inputs import RunInputs

OnStep = Callable[[int], None]


def run_drift(inputs: RunInputs, on_step: OnStep | None = None, device: str = "cpu") -> dict:
    started = time.perf_counter()
    refs = make_references(inputs, device)
    result = drift(inputs, refs, on_step=on_step)
    metrics, verdict = None, None
    if result.diverged is None and result.first_divergence is None and result.failure is None:
        scratch = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
        scratch.set_state(result.final_params["scratch"], {})
        metrics = evaluate(inputs, {"scratch": scratch, **refs})
        verdict = drift_verdict(metrics, inputs.spec.dtype)
    timings = {"total_s": time.perf_counter() - started}
    env = fingerprint(inputs.spec.engines, device)
    return drift_report(inputs, result, metrics, verdict, env, timings)
