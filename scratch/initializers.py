"""Initial weights: drawn once, from one seed, by scratch; every engine starts from them.

Each scheme is one function that draws W_l of shape (n_in, n_out) = (n_{l-1}, n_l); biases
start at 0. ``gain`` scales the draw (large gains saturate the activations on purpose).

    glorot_uniform  W ~ U(-a, a),  a = gain·sqrt(6 / (n_in + n_out))
    glorot_normal   W ~ N(0, σ²),  σ = gain·sqrt(2 / (n_in + n_out))
    he_normal       W ~ N(0, σ²),  σ = gain·sqrt(2 / n_in)
    he_uniform      W ~ U(-a, a),  a = gain·sqrt(6 / n_in)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scratch.config import MLP, ScratchInputError

Draw = Callable[[np.random.Generator, int, int, float], np.ndarray]


def glorot_uniform(rng: np.random.Generator, n_in: int, n_out: int, gain: float) -> np.ndarray:
    a = gain * np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-a, a, size=(n_in, n_out))


def glorot_normal(rng: np.random.Generator, n_in: int, n_out: int, gain: float) -> np.ndarray:
    return rng.normal(0.0, gain * np.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_out))


def he_normal(rng: np.random.Generator, n_in: int, n_out: int, gain: float) -> np.ndarray:
    return rng.normal(0.0, gain * np.sqrt(2.0 / n_in), size=(n_in, n_out))


def he_uniform(rng: np.random.Generator, n_in: int, n_out: int, gain: float) -> np.ndarray:
    a = gain * np.sqrt(6.0 / n_in)
    return rng.uniform(-a, a, size=(n_in, n_out))


INITIALIZERS: dict[str, Draw] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
}


def init_params(
    mlp: MLP,
    seed: int,
    scheme: str = "glorot_uniform",
    dtype: str = "float64",
    gain: float = 1.0,
) -> dict[str, np.ndarray]:
    """Draw W1, b1, …, WL, bL from one seeded generator, layer by layer; biases start at 0.
    With batch normalization each hidden layer has no b, and its gamma starts at 1 and its
    beta at 0 (as PyTorch's BatchNorm1d's).

    The draws are made in float64 and rounded to ``dtype``, so a float32 run starts from
    the float64 run's weights rounded to float32.
    """
    if scheme not in INITIALIZERS:
        raise ScratchInputError(
            f"unknown initializer {scheme!r}; choose one of {', '.join(INITIALIZERS)}"
        )
    draw = INITIALIZERS[scheme]
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for l in range(1, mlp.n_layers + 1):
        n_in, n_out = mlp.sizes[l - 1], mlp.sizes[l]
        params[f"W{l}"] = draw(rng, n_in, n_out, gain).astype(dtype)  # (n_{l-1}, n_l)
        if mlp.batch_norm and l < mlp.n_layers:  # no bias before batch normalization
            params[f"gamma{l}"] = np.ones(n_out, dtype=dtype)  # (n_l,)
            params[f"beta{l}"] = np.zeros(n_out, dtype=dtype)  # (n_l,)
        else:
            params[f"b{l}"] = np.zeros(n_out, dtype=dtype)  # (n_l,)
    return params
