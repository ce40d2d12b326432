"""``oracle/roundoff.py`` on its own: the error bound of a sum, and the allowances of a step —
one per tensor of the trace, elementwise, finite and positive, scaling with the dtype's
precision, and the same whether steps are computed one by one or stacked."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.oracle.roundoff import (
    RoundoffStep,
    RoundoffSteps,
    allowances,
    gamma,
    stacked_allowances,
)
from comparisons.oracle.tolerances import ROUNDOFF
from comparisons.run.engines import ScratchEngine, initial_state
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec

U64 = np.finfo(np.float64).eps / 2


def test_gamma_is_the_bound_of_a_sum_of_n_products():
    assert gamma(1, U64) == pytest.approx(U64)
    assert gamma(10, U64) == pytest.approx(10 * U64 / (1 - 10 * U64))
    assert gamma(100, 1e-3) > 100 * 1e-3  # grows faster than n·u as n·u nears 1


def step_and_trace(dtype: str, index: int = 0, **changes):
    spec = RunSpec().replace(
        dataset="synthetic", synthetic_rows=12, batch_size=4, dtype=dtype, **changes
    )
    inputs = build_inputs(spec)
    engine = ScratchEngine(inputs.mlp, inputs.optimizer, dtype)
    engine.set_state(inputs.start(), initial_state(inputs.optimizer, inputs.params0))
    X, Y = inputs.train
    for step in inputs.schedule.steps[: index + 1]:
        params, state = (dict(part) for part in engine.state())
        trace = engine.step(X[step.rows], Y[step.rows])
    s = RoundoffStep(inputs.mlp, inputs.optimizer, params, state, X[step.rows], Y[step.rows])
    return s, trace


@pytest.mark.parametrize(
    "changes",
    [{}, {"optimizer": "adam", "lr": 0.01}, {"batch_norm": True}, {"activation": "relu"}],
    ids=["sgd", "adam", "batch-norm", "relu"],
)
def test_every_tensor_gets_a_finite_non_negative_allowance_of_its_own_shape(changes):
    step, trace = step_and_trace("float64", **changes)
    allowed = allowances(step, trace, "float64")
    floats = [n for n, v in trace.items() if np.asarray(v).dtype.kind == "f"]
    assert set(floats) <= set(allowed)
    for name in floats:
        a = allowed[name]
        assert np.shape(a) == np.shape(trace[name]), name
        assert np.all(np.isfinite(a)) and np.all(a >= 0), name


def test_float32_allows_about_as_much_more_as_its_precision_is_coarser():
    step64, trace64 = step_and_trace("float64")
    step32, trace32 = step_and_trace("float32")
    a64, a32 = allowances(step64, trace64, "float64"), allowances(step32, trace32, "float32")
    ratio = np.finfo(np.float32).eps / np.finfo(np.float64).eps  # 2^29
    for name in ("Z1", "dW1", "W1"):
        scale = float(np.max(a32[name])) / float(np.max(a64[name]))
        assert ratio / 8 < scale < ratio * 8, f"{name}: {scale:.3g} times float64's"


def test_stacked_steps_get_exactly_the_allowances_each_gets_alone():
    steps = [step_and_trace("float64", index=i, optimizer="adam", lr=0.01) for i in range(3)]
    stacked = stacked_allowances(
        RoundoffSteps.stack([s for s, _ in steps]),
        {n: np.stack([t[n] for _, t in steps]) for n in steps[0][1]},
        "float64",
    )
    for i, (step, trace) in enumerate(steps):
        alone = allowances(step, trace, "float64")
        for name, a in alone.items():
            np.testing.assert_array_equal(stacked[name][i], a, err_msg=f"step {i}: {name}")


@pytest.mark.parametrize(
    "changes", [{}, {"batch_norm": True}, {"activation": "relu"}], ids=["plain", "bn", "relu"]
)
def test_a_z_reported_many_times_too_large_gets_no_larger_allowance(changes):
    """Z's allowance is its operands' (A, W, b and their errors), whatever Z an engine reports:
    so γ_n·|Z| from the reported Z is no lower bound of it, and a cheap test built on it
    would pass, for two engines sharing that wrong Z, what the full allowance fails
    (docs/numerics.md)."""
    step, trace = step_and_trace("float64", **changes)
    sizes = step.mlp.sizes
    honest = allowances(step, trace, "float64")
    for l in range(1, step.mlp.n_layers + 1):
        z = f"Z{l}"
        wrong = {**trace, z: trace[z] * 100.0}  # (the tensors after it read Z: only Z's own)
        inflated = allowances(step, wrong, "float64")
        np.testing.assert_array_equal(inflated[z], honest[z], err_msg=z)
        cheap = ROUNDOFF["float64"].safety * gamma(sizes[l - 1] + 1, U64) * np.abs(wrong[z])
        assert np.any(cheap > inflated[z]), f"{z}: safety·γ·|Z| stayed below the allowance"
