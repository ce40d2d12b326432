"""Activation functions g and their derivatives g', elementwise.

Shapes: Z and A are (B, n) — B is the batch size, n the width of the layer.

Each activation is a pair ``forward(Z) -> A`` and ``derivative(Z, A) -> g'(Z)``. The
derivative receives both Z and A because for sigmoid and tanh the textbook form is written
in terms of the output A (sigmoid' = A(1 - A), tanh' = 1 - A²), which is also the cheaper
and more accurate way to compute it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

LEAKY_RELU_SLOPE = 0.01  # PyTorch's nn.LeakyReLU and jax.nn.leaky_relu default
ELU_ALPHA = 1.0  # PyTorch's nn.ELU and jax.nn.elu default (the only α scratch offers)


class Activation(NamedTuple):
    forward: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]


def sigmoid(Z: np.ndarray) -> np.ndarray:
    """A = 1 / (1 + exp(-Z)), computed without overflow for large |Z|.

    For Z >= 0 use 1 / (1 + e^-Z); for Z < 0 the equal form e^Z / (1 + e^Z). Either way
    the exponent is <= 0, so exp never overflows; with E = e^-|Z| both are one division,
    (1 or E) / (1 + E).
    """
    E = np.exp(-np.abs(Z))  # (B, n), in (0, 1]
    return np.where(Z >= 0, 1.0, E) / (1.0 + E)


def sigmoid_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """g'(Z) = A (1 - A)."""
    return A * (1.0 - A)


def tanh(Z: np.ndarray) -> np.ndarray:
    """A = tanh(Z)."""
    return np.tanh(Z)


def tanh_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """g'(Z) = 1 - A²."""
    return 1.0 - A * A


def relu(Z: np.ndarray) -> np.ndarray:
    """A = max(Z, 0)."""
    return np.maximum(Z, 0.0)


def relu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """g'(Z) = 1 where Z > 0, else 0 (0 at Z = 0, as PyTorch and JAX take it)."""
    return (Z > 0).astype(Z.dtype)


def leaky_relu(Z: np.ndarray) -> np.ndarray:
    """A = Z where Z > 0, else s·Z, with s = LEAKY_RELU_SLOPE."""
    return np.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)


def leaky_relu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """g'(Z) = 1 where Z > 0, else s (s at Z = 0, as PyTorch and JAX take it)."""
    return np.where(Z > 0, 1.0, LEAKY_RELU_SLOPE).astype(Z.dtype)


def elu(Z: np.ndarray) -> np.ndarray:
    """A = Z where Z > 0, else α·(e^Z - 1), with α = ELU_ALPHA.

    e^Z - 1 is computed as ``expm1``: for Z near 0, exp(Z) - 1 would cancel to a few digits.
    ``min(Z, 0)`` keeps the unused branch from overflowing where Z is large.
    """
    return np.where(Z > 0, Z, ELU_ALPHA * np.expm1(np.minimum(Z, 0.0)))


def elu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """g'(Z) = 1 where Z > 0, else α·e^Z (= A + α, the textbook form in A).

    Written as α·e^Z, not A + α: where Z is very negative A is close to -α, and A + α keeps
    none of e^Z's digits. With α = 1 both sides meet at 1, so g' is continuous at 0 and there
    is no convention to choose there.
    """
    return np.where(Z > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(Z, 0.0))).astype(Z.dtype)


def identity(Z: np.ndarray) -> np.ndarray:
    """A = Z (the output layer when the loss works on logits)."""
    return Z


def identity_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """g'(Z) = 1."""
    return np.ones_like(Z)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_derivative),
    "tanh": Activation(tanh, tanh_derivative),
    "relu": Activation(relu, relu_derivative),
    "leaky_relu": Activation(leaky_relu, leaky_relu_derivative),
    "elu": Activation(elu, elu_derivative),
    "identity": Activation(identity, identity_derivative),
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name; an unknown name says which names exist."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}"
        ) from None
