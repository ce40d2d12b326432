"""Losses on their own: known values, stability at extremes, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch.losses import LOSSES, bce, bce_logits, get_loss, mse, softmax, softmax_cross_entropy
from tests.scratch.cases import exactly


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


# Row 0's logits are near +1000, row 1's near -1000: shifting by one max for the whole
# batch would send every exp of row 1 to 0 (exp(-2000)), and 0/0 is NaN.
WIDE_LOGITS = np.array([[1000.0, 0.0], [-1000.0, -1001.0]])


def test_softmax_shifts_each_row_by_its_own_max():
    e = math.exp(-1.0)
    expected = [[1.0, 0.0], [1 / (1 + e), e / (1 + e)]]  # softmax([0, -1]) for row 1
    np.testing.assert_allclose(softmax(WIDE_LOGITS), expected, rtol=1e-14, atol=0)


def test_softmax_cross_entropy_shifts_each_row_by_its_own_max():
    # Row 0, class 0: -log softmax = log(1 + e^-1000) = 0 in float64.
    # Row 1, class 1: -log(e^-1 / (1 + e^-1)) = 1 + log(1 + e^-1).
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    e = math.exp(-1.0)
    loss, dA = softmax_cross_entropy(WIDE_LOGITS, Y)
    assert loss == pytest.approx((0.0 + 1.0 + math.log1p(e)) / 2, rel=1e-14)
    P = [[1.0, 0.0], [1 / (1 + e), e / (1 + e)]]
    np.testing.assert_allclose(dA, (np.array(P) - Y) / 2, rtol=1e-14, atol=1e-300)


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


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown .*hinge.*choose one of"):
        get_loss("hinge")


def test_unknown_loss_message_lists_every_loss_in_full():
    message = "unknown loss 'hinge'; choose one of bce, bce_logits, mse, softmax_cross_entropy"
    with pytest.raises(ValueError, match=exactly(message)):
        get_loss("hinge")
