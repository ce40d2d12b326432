"""The engine contract (``reference/__init__.py``), once for both references: each engine
loads, keeps, copies, predicts and refuses as the contract says, runs free, decays, clips,
schedules, drops out and normalizes as scratch does. Every trace tensor of every activation
× loss head × optimizer × dtype: ``test_contract_matrix.py``.
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
    OPTIMIZERS,
    REFERENCES,
    batch,
    engine_module,
    label,
    make,
    start,
    steps_agree,
    with_l2,
)

pytestmark = pytest.mark.parametrize("reference", REFERENCES)


@pytest.mark.parametrize("opt", [pytest.param(o, id=label(o)) for o in OPTIMIZERS])
def test_free_running_engine_follows_scratchs_own_training(reference, rng, opt):
    """set_state once, then four steps on the engine's own state."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params, state = start(mlp, opt)
    batches = [batch(rng, mlp, "float64") for _ in range(4)]
    steps_agree(make(reference, mlp, opt), mlp, opt, params, state, batches, lockstep=False)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "opt",
    [
        pytest.param(with_l2(OPTIMIZERS[1]), id="momentum+l2"),
        pytest.param(OPTIMIZERS[4], id="adamw"),
    ],
)
@pytest.mark.parametrize("threshold", [0.5, 2.0], ids=["clipping", "not-clipping"])
def test_clipping_by_the_global_norm(reference, rng, opt, dtype, threshold):
    """clip_norm at half, then at twice the first step's gradient norm: the step that clips
    and the one that does not agree with scratch, grad_norm (the norm before clipping) too,
    and decay is added after clipping in every engine."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params, state = start(mlp, opt, dtype)
    X, Y = batch(rng, mlp, dtype)
    trace = train_step(mlp, opt, params, state, X, Y)[0]
    norm = float(np.sqrt(sum(np.sum(trace[f"d{p}"].astype(np.float64) ** 2) for p in params)))
    clipping = dataclasses.replace(opt, clip_norm=threshold * norm)
    engine = make(reference, mlp, clipping, dtype)
    batches = [(X, Y)] + [batch(rng, mlp, dtype) for _ in range(2)]
    steps_agree(engine, mlp, clipping, params, state, batches)


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


STEP_DECAY = {"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": 0.3}
# five updates: two of warm-up, then a cosine over six (not finished within the five)
COSINE = {"lr_schedule": "cosine", "lr_warmup": 2, "lr_min": 0.001, "lr_decay_steps": 8}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "opt",
    [
        pytest.param(dataclasses.replace(OPTIMIZERS[2], **STEP_DECAY), id="nesterov-step"),
        pytest.param(dataclasses.replace(OPTIMIZERS[4], **STEP_DECAY), id="adamw-step"),
        pytest.param(dataclasses.replace(OPTIMIZERS[1], **COSINE), id="momentum-cosine"),
        pytest.param(dataclasses.replace(OPTIMIZERS[3], **COSINE), id="adam-cosine"),
    ],
)
def test_a_schedule_in_lockstep_and_free_running(reference, rng, opt, dtype):
    """Five updates across two decays (step) or the warm-up's end (cosine): the lr of each (a
    trace tensor) and every update agree with scratch, loaded before every step and running
    free on the engine's own state."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params, state = start(mlp, opt, dtype)
    batches = [batch(rng, mlp, dtype) for _ in range(5)]
    for lockstep in (True, False):
        engine = make(reference, mlp, opt, dtype)
        steps_agree(engine, mlp, opt, params, state, batches, lockstep=lockstep)


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


# Each decayed optimizer, and how much further its first step moves W than the same step
# without decay (None where there is no closed form: Adam normalizes the L2 gradient).
DECAYED = [
    pytest.param(with_l2(OPTIMIZERS[0]), 1.0, id="sgd+l2"),
    pytest.param(with_l2(OPTIMIZERS[1]), 1.0, id="momentum+l2"),
    pytest.param(with_l2(OPTIMIZERS[2]), 1.0 + OPTIMIZERS[2].momentum, id="nesterov+l2"),
    pytest.param(with_l2(OPTIMIZERS[3]), None, id="adam+l2"),
    pytest.param(OPTIMIZERS[4], 1.0, id="adamw"),
]


@pytest.mark.parametrize(("decayed", "factor"), DECAYED)
def test_weight_decay_touches_weights_only(reference, rng, decayed, factor):
    """The same first step with and without decay: every bias moves bit for bit the same,
    the weights differently (by factor·lr·λ·W more, where that has a closed form)."""
    mlp = MLP((4, 6, 5, 2), "tanh", "identity", "mse")
    plain = Optimizer("adam" if decayed.name == "adamw" else decayed.name, lr=decayed.lr)
    decay = decayed.l2 or decayed.weight_decay
    params, _ = start(mlp, plain)
    X, Y = batch(rng, mlp, "float64")
    traces = []
    for opt in (decayed, plain):
        engine = make(reference, mlp, opt)
        engine.set_state(*start(mlp, opt))
        traces.append(engine.step(X, Y))
    with_decay, without = traces
    for l in (1, 2, 3):
        np.testing.assert_array_equal(with_decay[f"Δb{l}"], without[f"Δb{l}"])
        assert np.any(with_decay[f"ΔW{l}"] != without[f"ΔW{l}"]), f"ΔW{l}"
        if factor is not None:
            # Exact in real arithmetic; the 1e-9 is float64 rounding of two separate steps.
            np.testing.assert_allclose(
                with_decay[f"ΔW{l}"] - without[f"ΔW{l}"],
                -factor * decayed.lr * decay * params[f"W{l}"],
                rtol=1e-9,
                err_msg=f"ΔW{l}",
            )


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
        ("name", "rmsprop"),
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
