"""The main job: the lockstep oracle over a whole run, with metrics, walkthrough, arbitration."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from comparisons.oracle.arbitration import arbitrate
from comparisons.oracle.lockstep import lockstep
from comparisons.oracle.metrics import evaluate_all
from comparisons.report.content import lockstep_report
from comparisons.report.environment import fingerprint
from comparisons.report.walkthrough import walkthrough
from comparisons.run.engines import make_references
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest

OnStep = Callable[[int], None]


def run_lockstep(
    inputs: RunInputs,
    on_step: OnStep | None = None,
    device: str = "cpu",
    under_test: UnderTest = SCRATCH,
    workers: Mapping | None = None,
    plain: bool = False,
    stop_at_first: bool = False,
) -> dict:
    """The run's report. ``workers``: references in worker processes (``oracle/workers.py``),
    started by the caller; the others are made here. ``plain``: the lockstep rule's plain
    loop (``oracle/plain.py``) instead of its fast executor; the same report.
    ``stop_at_first``: end at the first divergent step (``oracle/lockstep.py``)."""
    started = time.perf_counter()
    under_test.check_references(inputs.spec.engines)
    refs = make_references(inputs, device, workers)
    result = lockstep(
        inputs,
        refs,
        on_step=on_step,
        under_test=under_test,
        plain=plain,
        stop_at_first=stop_at_first,
    )
    run_s = time.perf_counter() - started
    metrics = None
    if result.verdict in ("agree", "disagree"):  # a diverged or stopped run has none
        final = result.final_params, result.final_state
        metrics, failure = evaluate_all(inputs, under_test, *final, refs)
        result.failure = result.failure or failure
    steps = walkthrough(result.first_step_traces, inputs.mlp, inputs.optimizer)
    timings = {"run_s": run_s, "total_s": time.perf_counter() - started}
    env = fingerprint(inputs.spec.engines, device, workers)
    report = lockstep_report(inputs, result, metrics, steps, env, timings, under_test)
    if result.first_divergence is not None:
        report["arbitration"] = arbitrate(
            inputs, result.first_divergence, result.divergent_step, under_test.name
        )
    return report
