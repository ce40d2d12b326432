"""What the scratch tests share: the activation × loss matrix they run over, with readable
ids, a small network, and a pattern that matches an error message in full."""

from __future__ import annotations

import re

import numpy as np
import pytest

from scratch.activations import ACTIVATIONS
from scratch.config import MLP

# Three layers with weights and no two widths equal: every weight matrix is non-square, so
# a transposed one has the wrong shape.
MLP_421 = MLP((4, 3, 2, 1), hidden="tanh", output="identity", loss="bce_logits")


def exactly(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern that accepts this message and nothing else."""
    return f"^{re.escape(message)}$"


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
