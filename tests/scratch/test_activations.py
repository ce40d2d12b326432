"""Activations on their own: known values, stability at extremes, derivatives, dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch.activations import ACTIVATIONS, elu, elu_derivative, get_activation, sigmoid
from tests.scratch.cases import exactly

EXTREME = np.array([[-1000.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 1000.0]])


def test_sigmoid_is_finite_and_exact_for_large_inputs():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        A = sigmoid(EXTREME)
    expected = [1 / (1 + math.exp(-z)) if z > -700 else 0.0 for z in EXTREME[0]]
    np.testing.assert_allclose(A[0], expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivative_matches_central_difference(rng, name):
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


def test_elu_is_finite_at_extremes_and_exact_near_zero():
    """α(e^Z - 1) through expm1: near 0, exp(Z) - 1 would keep only a few digits of 1e-3's
    e^Z - 1; at -1000 the unused positive branch and e^Z stay finite."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        A = elu(EXTREME)
    expected = [math.expm1(z) if z <= 0 else z for z in EXTREME[0]]
    np.testing.assert_allclose(A[0], expected, rtol=1e-15, atol=0)


def test_elu_derivative_is_e_to_the_z_below_zero_to_full_relative_precision():
    """g'(Z) = e^Z for Z <= 0, where A + 1 would keep none of e^-40's digits (A = -1 there),
    and 1 above; with α = 1 both sides are 1 at 0 (no kink to choose a side of)."""
    Z = np.array([[-40.0, -1e-3, 0.0, 1e-3, 40.0]])
    expected = [math.exp(-40.0), math.exp(-1e-3), 1.0, 1.0, 1.0]
    np.testing.assert_allclose(elu_derivative(Z, elu(Z))[0], expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_and_derivatives_keep_float32(name):
    """A float32 run must stay float32: the oracle fails a float64 tensor in a float32 run."""
    act = get_activation(name)
    Z = np.array([[-1.5, -0.25, 0.0, 0.5, 2.0]], dtype=np.float32)
    A = act.forward(Z)
    assert A.dtype == np.float32
    assert act.derivative(Z, A).dtype == np.float32


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown .*swish.*choose one of"):
        get_activation("swish")


def test_unknown_activation_message_lists_every_activation_in_full():
    message = "unknown activation 'swish'; choose one of elu, identity, leaky_relu, relu, "
    message += "sigmoid, tanh"
    with pytest.raises(ValueError, match=exactly(message)):
        get_activation("swish")
