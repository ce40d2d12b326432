"""Gradcheck mode: the engine under test's backprop against central finite differences, no
framework."""

from __future__ import annotations

import time
from collections.abc import Callable

from comparisons.oracle.gradcheck import FD, gradcheck
from comparisons.oracle.tolerances import FINITE_DIFFERENCES
from comparisons.oracle.verdict import decide
from comparisons.report.content import base_report
from comparisons.report.environment import fingerprint
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest

OnStep = Callable[[int], None]


def run_gradcheck(
    inputs: RunInputs,
    n_steps: int,
    on_step: OnStep | None = None,
    under_test: UnderTest = SCRATCH,
) -> dict:
    """Backprop against central differences at the first ``n_steps`` steps of the run."""
    started = time.perf_counter()
    per_step, first, diverged, failure = gradcheck(inputs, n_steps, on_step, under_test)
    timings = {"total_s": time.perf_counter() - started}
    report = base_report("gradcheck", inputs, fingerprint([]), timings, under_test)
    report["verdict"] = decide(failure=failure, disagreement=first is not None, diverged=diverged)
    report["error"] = failure.as_dict() if failure else None
    report["diverged"] = diverged.as_dict() if diverged else None
    report["engines"] = [under_test.name, FD]
    report["first_divergence"] = first.as_dict() if first else None
    report["finite_difference_tolerance"] = vars(FINITE_DIFFERENCES)
    report["per_step"] = per_step
    return report
