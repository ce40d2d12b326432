"""Loss functions: each returns the loss and its gradient with respect to the output.

Shapes: the network output A_L and the target Y are both (B, K) — B is the batch size and
K the number of outputs (K = 1 for a binary target; for softmax cross-entropy, Y is one-hot
over K classes).

Reduction, said out loud: every loss is the mean over the batch. MSE and the two binary
cross-entropies average over all B·K entries, exactly as PyTorch's ``reduction="mean"``
does (for K = 1 that is the mean over the batch); softmax cross-entropy sums over the K
classes of an example and averages over the B examples, as ``nn.CrossEntropyLoss`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from scratch.activations import sigmoid

# PyTorch's BCELoss clamps each log term at -100 so that a probability of exactly 0 or 1
# gives a finite loss; we follow it (see the conventions in docs/numerics.md).
BCE_LOG_FLOOR = -100.0


class Loss(NamedTuple):
    fn: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    # The output layer's activation this loss is written for; None: any activation fits.
    output_activation: str | None


def mse(A: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L = (1 / (B·K)) Σ (A - Y)²;   ∂L/∂A = 2 (A - Y) / (B·K)   (B, K)."""
    diff = A - Y  # (B, K)
    return np.mean(diff * diff), 2.0 * diff / diff.size


def bce(A: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary cross-entropy on probabilities A in [0, 1].

    L = -(1 / (B·K)) Σ [Y log A + (1 - Y) log(1 - A)], each log clamped below at -100;
    ∂L/∂A = (A - Y) / (A (1 - A)) / (B·K)   (B, K).

    The gradient uses the unclamped form: PyTorch's BCELoss does the same, with A(1 - A)
    floored at 1e-12 so that saturated outputs give a large but finite gradient.
    """
    with np.errstate(divide="ignore"):  # log(0) = -inf is then clamped to the floor
        log_A = np.maximum(np.log(A), BCE_LOG_FLOOR)  # (B, K)
        log_1mA = np.maximum(np.log1p(-A), BCE_LOG_FLOOR)  # (B, K)
    loss = -np.mean(Y * log_A + (1.0 - Y) * log_1mA)
    dA = (A - Y) / np.maximum(A * (1.0 - A), 1e-12) / A.size  # (B, K)
    return loss, dA


def bce_logits(A: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary cross-entropy on logits A (the output layer is the identity).

    L = (1 / (B·K)) Σ [max(A, 0) - A·Y + log(1 + exp(-|A|))], the stable form of
    -[Y log σ(A) + (1 - Y) log(1 - σ(A))];
    ∂L/∂A = (σ(A) - Y) / (B·K)   (B, K).
    """
    loss = np.mean(np.maximum(A, 0.0) - A * Y + np.log1p(np.exp(-np.abs(A))))
    return loss, (sigmoid(A) - Y) / A.size


def softmax(A: np.ndarray) -> np.ndarray:
    """P = exp(A - max A) / Σ_k exp(A - max A), row by row   (B, K).

    Subtracting each row's max changes nothing mathematically and keeps exp from
    overflowing on large logits.
    """
    E = np.exp(A - A.max(axis=1, keepdims=True))  # (B, K), entries in (0, 1]
    return E / E.sum(axis=1, keepdims=True)


def softmax_cross_entropy(A: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax cross-entropy on logits A over K classes, Y one-hot (or class probabilities).

    L = -(1 / B) Σ_i Σ_k Y_ik log softmax(A)_ik;   ∂L/∂A = (softmax(A) - Y) / B   (B, K).
    log softmax is computed as (A - max A) - log Σ exp(A - max A), which never overflows.
    """
    B = A.shape[0]
    shifted = A - A.max(axis=1, keepdims=True)  # (B, K)
    log_P = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (B, K)
    # the mean over the batch of each example's -Σ_k Y log P: a mean keeps the dtype in
    # NumPy 1.x too, where a float32 sum divided by the int B would become float64
    loss = np.mean(-np.sum(Y * log_P, axis=1))
    return loss, (softmax(A) - Y) / B


LOSSES: dict[str, Loss] = {
    "mse": Loss(mse, None),
    "bce": Loss(bce, "sigmoid"),
    "bce_logits": Loss(bce_logits, "identity"),
    "softmax_cross_entropy": Loss(softmax_cross_entropy, "identity"),
}


def get_loss(name: str) -> Loss:
    """Look a loss up by name; an unknown name says which names exist."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}"
        ) from None
