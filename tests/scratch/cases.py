"""The activation × loss matrix that the scratch tests run over, with readable ids."""

from __future__ import annotations

import numpy as np
import pytest

from scratch.activations import ACTIVATIONS

# (loss, output activation, number of outputs): every output layer each loss fits.
LOSS_HEADS = [
    ("mse", "identity", 2),
    ("mse", "sigmoid", 1),
    ("mse", "tanh", 2),
    ("bce", "sigmoid", 1),
    ("bce_logits", "identity", 1),
    ("softmax_cross_entropy", "identity", 3),
]

ACTIVATION_LOSS = [
    pytest.param(hidden, loss, out, k, id=f"{hidden}-{loss}-{out}")
    for hidden in ACTIVATIONS
    for loss, out, k in LOSS_HEADS
]


def targets(rng: np.random.Generator, loss: str, B: int, K: int) -> np.ndarray:
    """Targets of shape (B, K) that fit the loss: one-hot, 0/1, or real values."""
    if loss == "softmax_cross_entropy":
        return np.eye(K)[rng.integers(0, K, size=B)]
    if loss in ("bce", "bce_logits"):
        return rng.integers(0, 2, size=(B, K)).astype(np.float64)
    return rng.normal(size=(B, K))
