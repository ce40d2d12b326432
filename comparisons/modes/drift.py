"""Drift mode: free-running engines from the same start; the final losses decide."""

from __future__ import annotations

import time
from collections.abc import Callable

from comparisons.oracle.drift import drift, drift_decision, drift_verdict
from comparisons.oracle.metrics import evaluate_all
from comparisons.report.content import drift_report
from comparisons.report.environment import fingerprint
from comparisons.run.engines import make_references
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest

OnStep = Callable[[int], None]


def run_drift(
    inputs: RunInputs,
    on_step: OnStep | None = None,
    device: str = "cpu",
    under_test: UnderTest = SCRATCH,
) -> dict:
    started = time.perf_counter()
    under_test.check_references(inputs.spec.engines)
    refs = make_references(inputs, device)
    result = drift(inputs, refs, on_step=on_step, under_test=under_test)
    metrics, verdict = None, None
    if result.diverged is None and result.first_divergence is None and result.failure is None:
        params, state = result.final_params[under_test.name], result.final_state
        metrics, result.failure = evaluate_all(inputs, under_test, params, state, refs)
        if metrics is not None:
            verdict = drift_verdict(metrics, inputs.spec.dtype, under_test.name)
    timings = {"total_s": time.perf_counter() - started}
    env = fingerprint(inputs.spec.engines, device)
    decided = drift_decision(result, verdict)
    report = drift_report(inputs, result, metrics, verdict, env, timings, decided, under_test)
    return report
