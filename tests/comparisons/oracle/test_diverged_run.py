"""A run that diverges is reported as it happened: after the step where every engine turned
non-finite the run ends, the steps counted are the steps verified, the report's fields agree
with each other, and the oracle's own arithmetic warns about nothing.

Issue: a run that disagreed at step 0 and then went NaN everywhere went on to its last step,
counted the NaN steps as agreeing, said it diverged at the last step "the engines agreed until
then", and printed NumPy's overflow warnings from the comparison.
"""

from __future__ import annotations

import warnings

import pytest

from comparisons.modes.lockstep import run_lockstep
from comparisons.oracle.lockstep import lockstep
from comparisons.report.text import verdict_line
from comparisons.run.engines import ScratchEngine
from comparisons.run.inputs import build_inputs
from comparisons.run.under_test import under_test_of
from tests.comparisons import broken_engines
from tests.comparisons.lockstep_cases import synthetic_spec

# 10 rows in batches of 5: every batch has one shape; three epochs, six steps.
SPEC = {"synthetic_rows": 10, "batch_size": 5, "epochs": 3}


def test_a_run_ends_at_the_step_where_every_engine_went_non_finite():
    inputs = build_inputs(synthetic_spec(**SPEC))
    refs = {"reference": ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)}
    under_test = under_test_of(broken_engines.DisagreesThenDiverges)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the oracle's own arithmetic warns about nothing
        result = lockstep(inputs, refs, under_test=under_test)
    assert result.verdict == "disagree"
    assert result.first_divergence.step == 0
    assert result.diverged is not None and result.diverged.step == 3
    assert result.steps_run == 4 and result.steps_verified == 3
    assert result.divergent_steps == 3
    text = result.diverged.describe()
    assert "after 3 steps that disagreed" in text and "agreed until then" not in text


@pytest.mark.torch
def test_the_report_of_a_diverged_run_tells_it_as_it_happened():
    inputs = build_inputs(synthetic_spec(engines=("scratch", "torch"), **SPEC))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = run_lockstep(
            inputs, under_test=under_test_of(broken_engines.DisagreesThenDiverges)
        )
    assert report["verdict"] == "disagree"
    assert report["diverged"]["step"] == 3 and report["steps_verified"] == 3
    assert report["metrics"] is None
    assert report["metrics_note"] == "no metrics: training diverged at step 3"
    line = verdict_line(report)
    assert "3 of 3 steps verified" in line and "non-finite at step 3" in line
