"""training.py: the training step and loop (trace layout, divergence, learning at all), the
mini-batches of an epoch, and predicted classes and accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch import MLP, NonFiniteLossError, Optimizer, init_params, train
from scratch.network import dropout_masks
from scratch.optimizers import init_state
from scratch.training import accuracy, accuracy_of, classify, epoch_batches, train_step
from tests.scratch.cases import MLP_421


def test_train_step_traces_every_tensor_in_dataflow_order():
    opt = Optimizer("adam", lr=0.01)
    params = init_params(MLP_421, seed=0)
    X, Y = np.ones((5, 4)), np.ones((5, 1))
    trace, _, _ = train_step(MLP_421, opt, params, {"t": 0, **zero_adam(params)}, X, Y)
    assert list(trace) == (
        ["Z1", "A1", "Z2", "A2", "Z3", "A3", "loss"]
        + ["dZ3", "dW3", "db3", "dZ2", "dW2", "db2", "dZ1", "dW1", "db1"]
        + ["ΔW1", "Δb1", "ΔW2", "Δb2", "ΔW3", "Δb3", "t"]
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


def test_non_finite_loss_error_carries_the_step_and_the_loss():
    # Z = 1e200 · 1e200 overflows to inf at the first step, so the MSE loss is inf.
    mlp = MLP((1, 1), output="identity", loss="mse")
    params = {"W1": np.array([[1e200]]), "b1": np.array([0.0])}
    X, Y = np.array([[1e200]]), np.array([[0.0]])
    steps = train(mlp, Optimizer("sgd"), params, X, Y, [np.arange(1)])
    with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError) as info:
        list(steps)
    assert info.value.step == 0
    assert info.value.loss == math.inf
    assert str(info.value).startswith("the loss is inf at step 0: training diverged")


# --- the mini-batches of an epoch -------------------------------------------------------


def as_lists(batches: list[np.ndarray]) -> list[list[int]]:
    return [b.tolist() for b in batches]


def test_epoch_batches_keep_the_partial_last_batch_by_default():
    # 12 rows in batches of 5: rows 0-4, 5-9, and the 2 left over, 10-11.
    expected = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert as_lists(epoch_batches(np.arange(12), 5)) == expected
    assert as_lists(epoch_batches(np.arange(12), 5, drop_last=False)) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (12, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),  # 2 rows left over: dropped
        (10, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),  # nothing left over: nothing dropped
        (9, [[0, 1, 2, 3, 4]]),  # 4 rows left over, one short of a batch: dropped
        (4, []),  # not even one full batch
    ],
)
def test_epoch_batches_with_drop_last_keep_full_batches_only(n, expected):
    order = np.arange(n)[::-1].copy()  # a shuffled order: the batches follow it, not the index
    assert as_lists(epoch_batches(order, 5, drop_last=True)) == [
        [int(order[i]) for i in batch] for batch in expected
    ]


# --- predicted classes and accuracy -----------------------------------------------------


def test_classify_takes_the_argmax_of_several_outputs():
    # Two outputs (the smallest multi-output head) and three: each row's largest column.
    for loss, A_L, expected in [
        ("mse", [[0.2, 0.8], [0.9, 0.1], [0.6, 0.7]], [1, 0, 1]),
        ("softmax_cross_entropy", [[0.0, 2.0, 1.0], [5.0, -1.0, 4.0]], [1, 0]),
    ]:
        A_L = np.array(A_L)
        mlp = MLP((3, A_L.shape[1]), output="identity", loss=loss)
        np.testing.assert_array_equal(classify(mlp, A_L), expected)


@pytest.mark.parametrize(
    ("output", "loss", "A_L", "expected"),
    [
        # Logits: class 1 past 0 (σ(0) = 1/2), whatever the size of the logit.
        ("identity", "bce_logits", [-2.0, -0.1, 0.0, 0.3, 0.7, 5.0], [0, 0, 0, 1, 1, 1]),
        # Probabilities or regression outputs of a 0/1 target: class 1 past 0.5.
        ("sigmoid", "bce", [0.01, 0.3, 0.5, 0.51, 0.7, 0.99], [0, 0, 0, 1, 1, 1]),
        ("identity", "mse", [-1.0, 0.3, 0.5, 0.7, 1.2, 2.0], [0, 0, 0, 1, 1, 1]),
    ],
    ids=["logits", "probabilities", "mse"],
)
def test_classify_thresholds_one_output_strictly(output, loss, A_L, expected):
    mlp = MLP((3, 1), output=output, loss=loss)
    predicted = classify(mlp, np.array(A_L)[:, None])
    assert predicted.dtype.kind == "i"  # classes are integers, as the docstring says
    np.testing.assert_array_equal(predicted, expected)


def test_accuracy_of_one_hot_targets_compares_argmaxes():
    # Three classes: rows 0 and 2 predicted right, row 1 wrong (argmax 0, target 2).
    mlp = MLP((3, 3), output="identity", loss="softmax_cross_entropy")
    A_L = np.array([[0.0, 2.0, 1.0], [5.0, -1.0, 4.0], [0.0, 0.0, 3.0]])
    Y = np.eye(3)[[1, 2, 2]]
    assert accuracy_of(mlp, A_L, Y) == pytest.approx(2 / 3, abs=1e-15)
    # Two classes one-hot: the target is the argmax of each row, not its first column.
    mlp2 = MLP((3, 2), output="identity", loss="mse")
    A2 = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # predicted 1, 0, 1, 0
    Y2 = np.eye(2)[[1, 0, 0, 0]]  # right, right, wrong, right
    assert accuracy_of(mlp2, A2, Y2) == pytest.approx(3 / 4, abs=1e-15)


def test_accuracy_of_a_single_output_compares_classes_with_0_1_targets():
    mlp = MLP((3, 1), output="identity", loss="bce_logits")
    A_L = np.array([[2.0], [-1.0], [0.5], [-3.0]])  # predicted 1, 0, 1, 0
    Y = np.array([[1.0], [1.0], [1.0], [0.0]])  # right, wrong, right, right
    assert accuracy_of(mlp, A_L, Y) == pytest.approx(3 / 4, abs=1e-15)


def test_accuracy_of_a_batch_normalized_network_normalizes_with_the_running_statistics():
    # One hidden unit, N1 = (Z1 - running mean) / √(running var + ε), the logit is N1: with
    # the running mean 1.5 the rows X = -2, -1, 1, 2 are predicted 0, 0, 0, 1 (3 of 4 right);
    # the batch's own mean (0) would predict all four right.
    mlp = MLP((1, 1, 1), "identity", "identity", "bce_logits", batch_norm=True)
    params = {
        "W1": np.array([[1.0]]),
        "gamma1": np.array([1.0]),
        "beta1": np.array([0.0]),
        "W2": np.array([[1.0]]),
        "b2": np.array([0.0]),
    }
    X, Y = np.array([[-2.0], [-1.0], [1.0], [2.0]]), np.array([[0.0], [0.0], [1.0], [1.0]])
    running = {"running_mean1": np.array([1.5]), "running_var1": np.array([1.0])}
    assert accuracy(mlp, params, X, Y, running) == 0.75


# --- the training loop with dropout ---------------------------------------------------------


def test_train_draws_each_steps_masks_from_seed_0_by_default_in_the_runs_dtype(rng):
    """Without a seed, step k's masks are dropout_masks(mlp, B, 0, k), in the data's dtype:
    a float32 run stays float32 through its dropped outputs and gradients."""
    mlp = MLP((3, 4, 1), "tanh", "identity", "mse", dropout=0.5)
    params = {p: v.astype(np.float32) for p, v in init_params(mlp, 0).items()}
    X, Y = rng.normal(size=(6, 3)).astype(np.float32), np.ones((6, 1), dtype=np.float32)
    traces = list(train(mlp, Optimizer("sgd", lr=0.1), params, X, Y, [np.arange(3)] * 2))
    for step, trace in enumerate(traces):
        np.testing.assert_array_equal(trace["M1"], dropout_masks(mlp, 3, 0, step)["M1"])
        floats = {name: v.dtype for name, v in trace.items() if name != "t"}  # t: an int64
        assert floats == dict.fromkeys(floats, np.float32) and trace["t"].dtype == np.int64


# --- a step's options ---------------------------------------------------------------------


def test_a_float32_step_reports_the_gradient_norm_and_the_lr_in_float32(rng):
    mlp = MLP((3, 2, 1), "tanh", "identity", "mse")
    params = {p: v.astype(np.float32) for p, v in init_params(mlp, 0).items()}
    X, Y = rng.normal(size=(4, 3)).astype(np.float32), np.ones((4, 1), dtype=np.float32)
    opt = Optimizer("sgd", lr=0.1, clip_norm=0.5, lr_schedule="step", lr_step_size=2)
    trace, _, _ = train_step(mlp, opt, params, {"t": 0}, X, Y)
    assert {n: (trace[n].dtype, trace[n].shape) for n in ("grad_norm", "lr")} == {
        "grad_norm": (np.float32, ()),
        "lr": (np.float32, ()),
    }


def test_batch_normalization_takes_a_batch_of_two_rows():
    # two rows are the fewest with a variance; the running variance's B/(B - 1) is 2
    mlp = MLP((2, 3, 1), "tanh", "identity", "mse", batch_norm=True)
    params = init_params(mlp, 0)
    opt = Optimizer()
    X, Y = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[0.5], [1.0]])
    trace = train_step(mlp, opt, params, init_state(opt, params), X, Y)[0]
    np.testing.assert_allclose(trace["running_var1"], 0.9 + 0.1 * 2 * trace["var1"], rtol=1e-15)
