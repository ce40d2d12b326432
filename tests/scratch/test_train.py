"""The training step and loop: trace layout, bad input, divergence, and learning at all."""

from __future__ import annotations

import numpy as np
import pytest

from scratch import MLP, NonFiniteLossError, Optimizer, ScratchInputError, init_params, train
from scratch.training import accuracy, train_step

MLP_421 = MLP((4, 3, 2, 1), hidden="tanh", output="identity", loss="bce_logits")


def test_trace_names_follow_the_dataflow_order():
    opt = Optimizer("adam", lr=0.01)
    params = init_params(MLP_421, seed=0)
    X, Y = np.ones((5, 4)), np.ones((5, 1))
    trace, _, _ = train_step(MLP_421, opt, params, {"step": 0, **zero_adam(params)}, X, Y)
    assert list(trace) == (
        ["Z1", "A1", "Z2", "A2", "Z3", "A3", "loss"]
        + ["dZ3", "dW3", "db3", "dZ2", "dW2", "db2", "dZ1", "dW1", "db1"]
        + ["ΔW1", "Δb1", "ΔW2", "Δb2", "ΔW3", "Δb3"]
        + [f"adam_{m}_{p}" for p in ("W1", "b1", "W2", "b2", "W3", "b3") for m in "mv"]
        + ["W1", "b1", "W2", "b2", "W3", "b3"]
    )


def zero_adam(params):
    return {f"adam_{m}_{p}": np.zeros_like(v) for p, v in params.items() for m in "mv"}


def test_each_step_starts_from_the_previous_steps_parameters(rng):
    opt = Optimizer("momentum", lr=0.1)
    params = init_params(MLP_421, seed=0)
    X, Y = rng.normal(size=(10, 4)), rng.integers(0, 2, (10, 1)) * 1.0
    traces = list(train(MLP_421, opt, params, X, Y, [np.arange(5), np.arange(5, 10)]))
    first_new = {p: traces[0][p] for p in params}
    np.testing.assert_array_equal(traces[1]["W1"] - traces[1]["ΔW1"], first_new["W1"])


def test_training_learns_a_separable_problem(rng):
    X = rng.normal(size=(200, 4))
    Y = (X[:, :1] + X[:, 1:2] > 0).astype(np.float64)
    mlp = MLP((4, 8, 1), "sigmoid", "identity", "bce_logits")
    params = init_params(mlp, seed=0)
    batches = [rng.permutation(200)[i : i + 20] for _ in range(30) for i in range(0, 200, 20)]
    *_, last = train(mlp, Optimizer("sgd", lr=0.5), params, X, Y, batches)
    assert accuracy(mlp, {p: last[p] for p in params}, X, Y) > 0.95


def test_a_diverging_run_stops_naming_the_step(rng):
    mlp = MLP((2, 4, 1), "relu", "identity", "mse")
    X, Y = rng.normal(size=(8, 2)) * 100, rng.normal(size=(8, 1))
    steps = train(mlp, Optimizer("sgd", lr=10.0), init_params(mlp, 0), X, Y, [np.arange(8)] * 50)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(NonFiniteLossError) as info:
        list(steps)
    assert f"at step {info.value.step}" in str(info.value)
    assert info.value.step > 0


@pytest.mark.parametrize(
    ("X", "Y", "message"),
    [
        (np.ones((3, 5)), np.ones((3, 1)), r"X must be \(B, 4\)"),
        (np.ones((0, 4)), np.ones((0, 1)), "empty batch"),
        (np.ones((3, 4)), np.ones((3, 2)), r"Y must be \(B, n_L\)"),
        (
            np.array([[1, 2, np.nan, 4.0]]),
            np.ones((1, 1)),
            r"X holds a non-finite value at index \(0, 2\)",
        ),
        (np.ones((1, 4)), np.array([[np.inf]]), "Y holds a non-finite value"),
    ],
    ids=["wrong-width", "empty", "wrong-target", "nan-input", "inf-target"],
)
def test_bad_batches_are_refused(X, Y, message):
    opt = Optimizer("sgd")
    params = init_params(MLP_421, 0)
    with pytest.raises(ScratchInputError, match=message):
        train_step(MLP_421, opt, params, {"step": 0}, X, Y)


def test_wrong_parameter_shapes_are_refused():
    params = init_params(MLP_421, 0)
    params["W2"] = params["W2"].T
    with pytest.raises(ScratchInputError, match=r"W2 has shape \(2, 3\), expected \(3, 2\)"):
        train_step(MLP_421, Optimizer(), params, {"step": 0}, np.ones((2, 4)), np.ones((2, 1)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (4,)}, "at least two positive integer widths"),
        ({"sizes": (4, 0, 1)}, "at least two positive integer widths"),
        ({"sizes": (4, 1), "hidden": "swish"}, "unknown activation 'swish'"),
        ({"sizes": (4, 1), "loss": "hinge"}, "unknown loss 'hinge'"),
        ({"sizes": (4, 1), "loss": "bce", "output": "identity"}, "expects output activation"),
        ({"sizes": (4, 1), "loss": "softmax_cross_entropy"}, "at least 2 outputs"),
    ],
)
def test_bad_networks_are_refused(kwargs, message):
    with pytest.raises(ScratchInputError, match=message):
        MLP(**kwargs)


@pytest.mark.parametrize("scheme", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"])
def test_initializers_are_seeded_and_scaled(scheme):
    mlp = MLP((400, 300, 1))
    a, b = init_params(mlp, 7, scheme), init_params(mlp, 7, scheme)
    assert all(np.array_equal(a[p], b[p]) for p in a)
    fan = 700 if scheme.startswith("glorot") else 400
    assert np.std(a["W1"]) == pytest.approx(np.sqrt(2 / fan), rel=0.02)
    assert not np.array_equal(a["W1"], init_params(mlp, 8, scheme)["W1"])
    assert np.all(a["b1"] == 0)


def test_float32_parameters_are_the_float64_ones_rounded():
    p64, p32 = init_params(MLP_421, 1), init_params(MLP_421, 1, dtype="float32")
    assert p32["W1"].dtype == np.float32
    np.testing.assert_array_equal(p32["W1"], p64["W1"].astype(np.float32))
