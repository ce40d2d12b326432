"""The forward and backward passes of network.py: the per-example loop, finite differences,
and a 2-2-1 network by hand."""

from __future__ import annotations

import numpy as np
import pytest

from scratch import (
    MLP,
    forward_backward,
    forward_backward_per_example,
    init_params,
    numerical_gradients,
)
from tests.scratch.cases import ACTIVATION_LOSS, targets


def small_problem(rng, hidden, loss, out, K, B, sizes=(4, 6, 5)):
    mlp = MLP((*sizes, K), hidden, out, loss)
    params = init_params(mlp, seed=3)
    # Nudge biases off zero so that no pre-activation sits at a ReLU kink by symmetry.
    params = {p: v + 0.05 if p.startswith("b") else v for p, v in params.items()}
    X = rng.normal(size=(B, sizes[0]))
    return mlp, params, X, targets(rng, loss, B, K)


@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
def test_per_example_loop_equals_the_vectorized_pass(rng, hidden, loss, out, K):
    mlp, params, X, Y = small_problem(rng, hidden, loss, out, K, B=7)
    batch = forward_backward(mlp, params, X, Y)
    literal = forward_backward_per_example(mlp, params, X, Y)
    assert list(literal) == list(batch)
    for name in batch:
        np.testing.assert_allclose(literal[name], batch[name], rtol=1e-12, atol=1e-15, err_msg=name)


def test_per_example_loop_equals_the_batch_pass_for_a_single_row(rng):
    # B = 1: the loop has exactly one example; its trace is the batch's trace.
    mlp = MLP((4, 3, 2), "tanh", "identity", "mse")
    params = init_params(mlp, seed=1)
    X, Y = rng.normal(size=(1, 4)), rng.normal(size=(1, 2))
    literal = forward_backward_per_example(mlp, params, X, Y)
    batch = forward_backward(mlp, params, X, Y)
    assert list(literal) == list(batch)
    for name in batch:
        np.testing.assert_allclose(literal[name], batch[name], rtol=1e-15, err_msg=name)


def assert_matches_finite_differences(mlp, params, X, Y):
    """Backprop against central differences, each tensor relative to its own largest entry.

    With h = 1e-6 in float64 the difference quotient carries about 1e-10 of absolute rounding
    error on a loss of order 1, so 1e-6 of the tensor's scale leaves a wide margin, while a
    wrong equation is off by order 1.
    """
    analytic = forward_backward(mlp, params, X, Y)
    numeric = numerical_gradients(mlp, params, X, Y)
    assert set(numeric) == {k for k in analytic if k[0] == "d"}
    for name, expected in numeric.items():
        scale = max(np.max(np.abs(expected)), 1e-8)
        np.testing.assert_allclose(
            analytic[name], expected, rtol=0, atol=1e-6 * scale, err_msg=name
        )


@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
@pytest.mark.parametrize("B", [1, 5], ids=["batch1", "batch5"])
def test_backprop_matches_finite_differences(rng, hidden, loss, out, K, B):
    assert_matches_finite_differences(*small_problem(rng, hidden, loss, out, K, B))


def test_backprop_matches_finite_differences_on_a_partial_last_batch(rng):
    """7 rows in batches of 3: the last batch has 1 row, and its mean divides by 1, not 3."""
    mlp, params, X, Y = small_problem(rng, "tanh", "bce_logits", "identity", 1, B=7)
    batches = [np.arange(0, 3), np.arange(3, 6), np.arange(6, 7)]
    for rows in batches:
        assert_matches_finite_differences(mlp, params, X[rows], Y[rows])


def test_a_2_2_1_network_matches_every_value_worked_by_hand():
    """ReLU hidden layer, identity output, MSE, a batch of two — every number by hand.

    X = [[1, 2], [0, 1]]   Y = [[1], [0]]
    W1 = [[0.5, -1], [0.25, 0.5]]   b1 = [0, -0.75]   W2 = [[2], [3]]   b2 = [-0.5]

    Z1 = X @ W1 + b1 = [[1·0.5 + 2·0.25, 1·(-1) + 2·0.5], [0.25, 0.5]] + b1
                     = [[1, 0], [0.25, 0.5]] + [0, -0.75] = [[1, -0.75], [0.25, -0.25]]
    A1 = relu(Z1)    = [[1, 0], [0.25, 0]]
    Z2 = A1 @ W2 + b2 = [[2 - 0.5], [0.5 - 0.5]] = [[1.5], [0]]      A2 = Z2
    loss = ((1.5 - 1)² + (0 - 0)²) / 2 = 0.125
    dA2 = 2 (A2 - Y) / 2 = [[0.5], [0]]        dZ2 = dA2 (identity' = 1)
    dW2 = A1.T @ dZ2 = [[1·0.5 + 0.25·0], [0]] = [[0.5], [0]]        db2 = [0.5]
    dZ2 @ W2.T = [[1, 1.5], [0, 0]];  relu'(Z1) = [[1, 0], [1, 0]]  →  dZ1 = [[1, 0], [0, 0]]
    dW1 = X.T @ dZ1 = [[1, 0], [2, 0]]        db1 = [1, 0]
    """
    mlp = MLP((2, 2, 1), hidden="relu", output="identity", loss="mse")
    params = {
        "W1": np.array([[0.5, -1.0], [0.25, 0.5]]),
        "b1": np.array([0.0, -0.75]),
        "W2": np.array([[2.0], [3.0]]),
        "b2": np.array([-0.5]),
    }
    X = np.array([[1.0, 2.0], [0.0, 1.0]])
    Y = np.array([[1.0], [0.0]])
    expected = {
        "Z1": [[1.0, -0.75], [0.25, -0.25]],
        "A1": [[1.0, 0.0], [0.25, 0.0]],
        "Z2": [[1.5], [0.0]],
        "A2": [[1.5], [0.0]],
        "loss": 0.125,
        "dZ2": [[0.5], [0.0]],
        "dW2": [[0.5], [0.0]],
        "db2": [0.5],
        "dZ1": [[1.0, 0.0], [0.0, 0.0]],
        "dW1": [[1.0, 0.0], [2.0, 0.0]],
        "db1": [1.0, 0.0],
    }
    trace = forward_backward(mlp, params, X, Y)
    assert list(trace) == list(expected)  # the dataflow order of scratch/trace_schema.py
    for name, value in expected.items():
        np.testing.assert_allclose(trace[name], value, rtol=0, atol=1e-15, err_msg=name)


def test_sigmoid_output_with_bce_uses_the_textbook_error_term(rng):
    """With a sigmoid output and BCE, dZ_L collapses to (A_L - Y) / B."""
    mlp, params, X, Y = small_problem(rng, "sigmoid", "bce", "sigmoid", 1, B=6)
    trace = forward_backward(mlp, params, X, Y)
    np.testing.assert_allclose(trace["dZ3"], (trace["A3"] - Y) / 6, rtol=1e-12)
