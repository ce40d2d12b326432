"""Correct engines on unusual valid configurations: never a disagreement.

Each case is a run a user tried on correct code that the oracle once blamed or crashed on:
the verdict must be agreement, or "diverged" where every engine went non-finite together.
"""

from __future__ import annotations

import pytest

from comparisons.run.inputs import build_inputs
from tests.comparisons.lockstep_cases import REFERENCES, run, synthetic_spec


@pytest.mark.parametrize("reference", REFERENCES)
def test_an_overflow_that_is_inf_in_one_engine_and_nan_in_another_is_diverged(reference):
    # float32 and a huge initial scale: step 1's Z2 overflows; scratch's matmul gives ±inf
    # where the reference's order of operations meets inf - inf = NaN, in the same places
    spec = synthetic_spec(
        dtype="float32", init_gain=1e6, activation="relu", loss="mse", output="identity",
        synthetic_rows=60, synthetic_features=5, hidden=(8, 4), epochs=1,
    )  # fmt: skip
    result = run(build_inputs(spec), reference, stop_at_first=True)
    assert result.verdict == "diverged", (
        result.first_divergence.describe() if result.first_divergence else result.verdict
    )
    assert result.diverged.tensor == "Z2" and result.diverged.step == 1
    assert "non-finite in every engine" in result.diverged.describe()


@pytest.mark.parametrize("reference", REFERENCES)
def test_a_step_decay_that_underflows_the_learning_rate_to_zero_agrees(reference):
    # lr·γ² = 0.1·1e-400 is exactly 0 from the third update on: scratch once refused it
    spec = synthetic_spec(lr_schedule="step", lr_step_size=1, lr_gamma=1e-200)
    result = run(build_inputs(spec), reference, stop_at_first=True)
    assert result.agree, result.first_divergence.describe() if result.first_divergence else ""
    assert result.steps_run == len(build_inputs(spec).schedule)
