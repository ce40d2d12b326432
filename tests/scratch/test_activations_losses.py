"""Activations and losses on their own: known values, stability at extremes, derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch.activations import ACTIVATIONS, get_activation, sigmoid
from scratch.losses import LOSSES, bce, bce_logits, get_loss, mse, softmax, softmax_cross_entropy

EXTREME = np.array([[-1000.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 1000.0]])


def test_sigmoid_is_finite_and_exact_for_large_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        A = sigmoid(EXTREME)
    expected = [1 / (1 + math.exp(-z)) if z > -700 else 0.0 for z in EXTREME[0]]
    np.testing.assert_allclose(A[0], expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_matches_central_difference(rng, name):
    act = get_activation(name)
    Z = rng.normal(size=(4, 3))
    Z[np.abs(Z) < 1e-3] = 0.5  # keep away from the ReLU kink
    h = 1e-6
    numeric = (act.forward(Z + h) - act.forward(Z - h)) / (2 * h)
    np.testing.assert_allclose(act.derivative(Z, act.forward(Z)), numeric, rtol=1e-8, atol=1e-10)


def test_relu_family_derivative_at_zero_follows_the_frameworks():
    Z = np.zeros((1, 1))
    assert get_activation("relu").derivative(Z, Z)[0, 0] == 0.0
    assert get_activation("leaky_relu").derivative(Z, Z)[0, 0] == 0.01


def test_losses_are_means_over_the_batch():
    A = np.array([[0.2], [0.9]])
    Y = np.array([[0.0], [1.0]])
    assert mse(A, Y)[0] == pytest.approx((0.04 + 0.01) / 2)
    assert bce(A, Y)[0] == pytest.approx(-(math.log(0.8) + math.log(0.9)) / 2)
    logits = np.array([[0.0], [2.0]])
    expected = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert bce_logits(logits, Y)[0] == pytest.approx(expected)
    P = np.array([[math.log(1), math.log(3)]])  # softmax → [1/4, 3/4]
    assert softmax_cross_entropy(P, np.array([[0.0, 1.0]]))[0] == pytest.approx(-math.log(0.75))


def test_bce_clamps_log_at_minus_100_like_pytorch():
    loss, dA = bce(np.array([[0.0], [1.0]]), np.array([[1.0], [0.0]]))
    assert loss == 100.0
    assert np.all(np.isfinite(dA))


def test_stable_losses_survive_huge_logits():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, _ = bce_logits(np.array([[1000.0], [-1000.0]]), np.array([[1.0], [0.0]]))
        assert loss == 0.0
        logits = np.array([[1000.0, 0.0, -1000.0]])
        loss, _ = softmax_cross_entropy(logits, np.array([[0.0, 1.0, 0.0]]))
    assert loss == pytest.approx(1000.0)
    np.testing.assert_allclose(softmax(logits), [[1.0, 0.0, 0.0]], atol=1e-300)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient_matches_central_difference(rng, name):
    K = 3 if name == "softmax_cross_entropy" else 2
    A = rng.uniform(0.1, 0.9, size=(5, K))
    Y = np.eye(K)[rng.integers(0, K, 5)] if K == 3 else rng.integers(0, 2, (5, K)) * 1.0
    fn = get_loss(name).fn
    _, dA = fn(A, Y)
    h = 1e-6
    numeric = np.zeros_like(A)
    for j in np.ndindex(A.shape):
        up, down = A.copy(), A.copy()
        up[j] += h
        down[j] -= h
        numeric[j] = (fn(up, Y)[0] - fn(down, Y)[0]) / (2 * h)
    np.testing.assert_allclose(dA, numeric, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize(("lookup", "name"), [(get_activation, "swish"), (get_loss, "hinge")])
def test_unknown_names_list_the_known_ones(lookup, name):
    with pytest.raises(ValueError, match=f"unknown .*{name}.*choose one of"):
        lookup(name)
