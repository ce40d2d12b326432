"""The engine contract (``reference/__init__.py``), once for both references: each engine
loads, keeps, copies, predicts and refuses as the contract says, and drops out and
normalizes as scratch does. Its sweeps (every trace tensor of every activation × loss head ×
optimizer × dtype, free running, clipping, schedules, weight decay): ``test_contract_matrix.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scratch.activations import ACTIVATIONS
from scratch.config import MLP, Optimizer
from scratch.losses import LOSSES
from scratch.network import dropout_masks, evaluate
from scratch.trace_schema import OPTIMIZER_STATE
from scratch.training import train_step
from tests.reference.contract import (
    COSINE,
    OPTIMIZERS,
    REFERENCES,
    STEP_DECAY,
    batch,
    engine_module,
    make,
    start,
    steps_agree,
)

pytestmark = pytest.mark.parametrize("reference", REFERENCES)


def layer_cases() -> list:
    """Dropout, batch norm and both, with two optimizers in two dtypes: the quick tier takes
    both layers together with AdamW in each dtype, the slow tier every combination."""
    cases = []
    layers = [("tanh", 0.3, False), ("relu", 0.0, True), ("sigmoid", 0.4, True)]
    names = ["dropout", "batch-norm", "both"]
    for (hidden, dropout, batch_norm), name in zip(layers, names, strict=True):
        for opt, label_ in ((OPTIMIZERS[2], "nesterov"), (OPTIMIZERS[4], "adamw")):
            for dtype in ("float64", "float32"):
                quick = name == "both" and label_ == "adamw"
                cases.append(
                    pytest.param(
                        hidden, dropout, batch_norm, opt, dtype,
                        id=f"{label_}-{name}-{dtype}",
                        marks=() if quick else pytest.mark.slow,
                    )
                )  # fmt: skip
    return cases


@pytest.mark.parametrize(("hidden", "dropout", "batch_norm", "opt", "dtype"), layer_cases())
def test_dropout_and_batch_norm_in_lockstep_and_free_running(
    reference, rng, hidden, dropout, batch_norm, opt, dtype
):
    """Three steps with the masks given and the running statistics in the state: every
    tensor agrees with scratch, loaded before every step; and after the same three steps on
    its own state, the engine's evaluation (its running statistics) is scratch's. (Free
    running, a trace is not judged by the per-step allowances: they assume one start, and
    where dropout leaves a gradient exactly 0, what is left of a moment is the difference
    the two engines' states already had.)"""
    mlp = MLP((4, 6, 5, 3), hidden, "identity", "softmax_cross_entropy", dropout, batch_norm)
    params, state = start(mlp, opt, dtype)
    batches = [batch(rng, mlp, dtype) for _ in range(3)]
    final, final_state = steps_agree(
        make(reference, mlp, opt, dtype), mlp, opt, params, state, batches
    )
    free = make(reference, mlp, opt, dtype)
    free.set_state(params, state)
    for i, (X, Y) in enumerate(batches):
        free.step(X, Y, **({"masks": dropout_masks(mlp, len(X), 0, i, dtype)} if dropout else {}))
    X = batches[0][0]
    tol = 1e-10 if dtype == "float64" else 1e-4
    np.testing.assert_allclose(
        free.predict(X), evaluate(mlp, final, X, final_state), rtol=tol, atol=tol
    )


@pytest.mark.parametrize("schedule", [STEP_DECAY, COSINE], ids=["step", "cosine"])
def test_a_schedule_loaded_at_any_step_count_gives_that_steps_lr(reference, rng, schedule):
    """The state after t updates, loaded out of order (again at t = 0 after three steps, then
    at t = 4), steps with the lr of the (t + 1)-th update, as scratch does."""
    opt = dataclasses.replace(OPTIMIZERS[0], **schedule)
    mlp = MLP((4, 6, 2), "relu", "identity", "mse")
    engine = make(reference, mlp, opt)
    params, state = start(mlp, opt)
    X, Y = batch(rng, mlp, "float64")
    for t in (0, 1, 2, 0, 4, 1):
        at_t = {**state, "t": t}
        engine.set_state(params, at_t)
        expected = train_step(mlp, opt, params, at_t, X, Y)[0]
        # PyTorch's schedulers compute each lr from the last: a rounding or so per update
        assert engine.step(X, Y)["lr"] == pytest.approx(expected["lr"], rel=1e-14), t


def test_nothing_leaks_between_steps_or_between_engine_and_caller(reference, rng):
    """The same state loaded again steps to the same trace, bit for bit (no gradient
    accumulates, nothing of a step survives set_state); the engine never writes the caller's
    arrays (it updates its own copies in place), and the caller writing them after set_state
    changes nothing in the engine."""
    mlp = MLP((4, 6, 2), "relu", "identity", "mse")
    opt = Optimizer("adam", lr=0.01)
    params, state = start(mlp, opt)
    X, Y = batch(rng, mlp, "float64")
    _, params, state = train_step(mlp, opt, params, state, X, Y)  # nonzero moments, t = 1
    arrays = {**params, **{k: v for k, v in state.items() if k != "t"}}
    kept = {name: value.copy() for name, value in {**arrays, "X": X, "Y": Y}.items()}
    engine = make(reference, mlp, opt)
    traces = []
    for overwrite in (False, False, True):
        engine.set_state(params, state)
        if overwrite:  # the caller reuses its buffers
            for value in arrays.values():
                value[...] = np.nan
        traces.append(engine.step(X, Y))
        if not overwrite:
            for name, value in {**arrays, "X": X, "Y": Y}.items():
                np.testing.assert_array_equal(value, kept[name], err_msg=name)
    for trace in traces[1:]:
        assert list(trace) == list(traces[0])
        for name in trace:
            np.testing.assert_array_equal(trace[name], traces[0][name], err_msg=name)


def test_a_trace_handed_over_stays_as_it_was_while_the_engine_steps_on(reference, rng):
    """A step's trace is the caller's: the engine's later steps (free running, and loaded
    again) never change it, although a reference may hand over what a step made without a
    copy (the parameters, the optimizer's buffers and batch norm's statistics, which it
    changes in place, must be copies)."""
    mlp = MLP((4, 6, 5, 2), "tanh", "identity", "mse", dropout=0.25, batch_norm=True)
    opt = OPTIMIZERS[1]  # momentum: a buffer torch.optim updates in place
    params, state = start(mlp, opt)
    engine = make(reference, mlp, opt)
    engine.set_state(params, state)
    traces, copies = [], []
    for step in range(3):
        X, Y = batch(rng, mlp, "float64")
        traces.append(engine.step(X, Y, masks=dropout_masks(mlp, len(X), 0, step)))
        copies.append({name: np.array(value) for name, value in traces[-1].items()})
    engine.set_state(params, state)
    engine.step(X, Y, masks=dropout_masks(mlp, len(X), 0, 3))
    for trace, copy in zip(traces, copies, strict=True):
        for name, value in trace.items():
            np.testing.assert_array_equal(value, copy[name], err_msg=name)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_is_the_steps_forward_output_with_the_current_parameters(reference, rng, dtype):
    """predict(X) is A_L of a step on X, before the step and after it, in the engine dtype."""
    mlp = MLP((4, 6, 5, 3), "leaky_relu", "identity", "softmax_cross_entropy")
    opt = Optimizer("sgd", lr=0.1)
    engine = make(reference, mlp, opt, dtype)
    engine.set_state(*start(mlp, opt, dtype))
    X, Y = batch(rng, mlp, dtype)
    for _ in range(2):  # the second from the parameters the first step reached
        predicted = engine.predict(X)
        assert predicted.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(predicted, engine.step(X, Y)["A3"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_params_returns_what_set_state_loaded_then_what_the_step_made(reference, rng, dtype):
    """From read-only arrays (as np.load gives them: set_state must copy, not wrap)."""
    mlp = MLP((3, 2, 1), "tanh", "sigmoid", "bce")
    opt = Optimizer("sgd", lr=0.1)
    params, state = start(mlp, opt, dtype)
    params["b1"] = np.array([0.5, -0.25], dtype)
    for value in params.values():
        value.flags.writeable = False
    engine = make(reference, mlp, opt, dtype)
    engine.set_state(params, state)
    loaded = engine.params()
    trace = engine.step(*batch(rng, mlp, dtype))
    for expected, got in ((params, loaded), (trace, engine.params())):
        assert list(got) == list(params)
        for name, value in got.items():
            assert value.dtype == np.dtype(dtype), name
            np.testing.assert_array_equal(value, expected[name], err_msg=name)


def _invalid(mlp: MLP, opt: Optimizer, field: str, value: str) -> tuple[MLP, Optimizer]:
    """A name scratch might one day accept that the reference does not know: scratch's
    frozen records refuse it, so it is set behind their back."""
    target = opt if field == "name" else mlp
    object.__setattr__(target, field, value)
    return mlp, opt


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dtype", "float16"),
        ("device", "tpu"),
        ("device", "mps"),
        ("hidden", "gelu"),
        ("loss", "hinge"),
        ("name", "adagrad"),
    ],
    ids=["dtype", "device", "device-mps", "activation", "loss", "optimizer"],
)
def test_bad_names_are_refused_with_the_valid_ones(reference, field, value):
    module = engine_module(reference)
    valid = {
        "dtype": module.DTYPES,
        "device": module.DEVICES,
        "hidden": ACTIVATIONS,
        "loss": LOSSES,
        "name": OPTIMIZER_STATE,
    }[field]
    mlp, opt = MLP((2, 3, 1), "tanh", "identity", "mse"), Optimizer("sgd")
    kwargs = {field: value} if field in ("dtype", "device") else {}
    if not kwargs:
        mlp, opt = _invalid(mlp, opt, field, value)
    with pytest.raises(ValueError, match=f"unknown .*'{value}'; choose one of") as refused:
        make(reference, mlp, opt, **kwargs)
    for name in valid:
        assert name in str(refused.value), name


def test_a_step_predict_or_params_before_set_state_raises(reference):
    engine = make(reference, MLP((2, 3, 1), "tanh", "identity", "mse"), Optimizer("sgd"))
    for call in (
        lambda: engine.step(np.ones((1, 2)), np.ones((1, 1))),
        lambda: engine.predict(np.ones((1, 2))),
        engine.params,
    ):
        with pytest.raises(RuntimeError, match="set_state"):
            call()


@pytest.mark.parametrize(
    ("where", "missing"),
    [("state", "adam_v_b1"), ("state", "t"), ("params", "W1")],
    ids=["state-tensor", "state-t", "parameter"],
)
def test_set_state_names_what_is_missing(reference, where, missing):
    mlp, opt = MLP((2, 3, 1), "tanh", "identity", "mse"), Optimizer("adam")
    params, state = start(mlp, opt)
    loaded = {"params": params, "state": state}
    del loaded[where][missing]
    with pytest.raises(ValueError, match=missing):
        make(reference, mlp, opt).set_state(params, state)


def test_set_state_refuses_a_parameter_of_the_wrong_shape(reference):
    mlp, opt = MLP((2, 3, 1), "tanh", "identity", "mse"), Optimizer("sgd")
    params, state = start(mlp, opt)
    engine = make(reference, mlp, opt)
    with pytest.raises(ValueError, match=r"W1 has shape \(3, 2\), expected \(2, 3\)"):
        engine.set_state({**params, "W1": params["W1"].T}, state)
