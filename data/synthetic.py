"""A small seeded classification problem that needs a hidden layer: spiral-shaped classes."""

from __future__ import annotations

import numbers

import numpy as np

from .errors import DataError

# Radians of extra rotation per unit of radius: turns straight sector boundaries into spirals,
# so no single hyperplane separates the classes. Modest, so that 200 rows suffice to learn it.
TWIST = 1.5


def make_synthetic(
    n_rows: int = 200,
    n_features: int = 5,
    n_classes: int = 2,
    seed: int = 0,
    noise: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (X (n_rows, n_features), Y) as float64, deterministic in `seed`.

    X ~ N(0, 1). With (r, theta) the polar coordinates of the first two features, a row's
    class is the one of `n_classes` equal angular sectors that holds the phase
    theta + TWIST * r + noise * eps, eps ~ N(0, 1); the other features carry no signal.
    Y is (n_rows, 1) of 0/1 for two classes, else one-hot (n_rows, n_classes).

    Draws, in order, from numpy.random.default_rng(seed): X = standard_normal((n_rows,
    n_features)), then eps = standard_normal(n_rows).
    """
    for name, value, least in (
        ("n_rows", n_rows, 1),
        ("n_features", n_features, 2),
        ("n_classes", n_classes, 2),
        ("seed", seed, 0),
    ):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
            raise DataError(f"{name} must be an integer >= {least}, got {value!r}")
    if not noise >= 0:  # also rejects NaN
        raise DataError(f"noise must be >= 0, got {noise!r}")

    rng = np.random.default_rng(int(seed))
    X = rng.standard_normal((n_rows, n_features))  # (n, n_features)
    eps = rng.standard_normal(n_rows)  # (n,)
    r = np.hypot(X[:, 0], X[:, 1])  # (n,)
    theta = np.arctan2(X[:, 1], X[:, 0])  # (n,) in [-pi, pi]
    phase = np.mod(theta + TWIST * r + noise * eps, 2 * np.pi)  # (n,) in [0, 2 pi)
    # min() guards the one-ulp case where mod returns exactly 2 pi after rounding.
    labels = np.minimum((phase * n_classes / (2 * np.pi)).astype(np.int64), n_classes - 1)
    if n_classes == 2:
        return X, labels[:, None].astype(np.float64)  # (n, 1)
    one_hot = np.zeros((n_rows, n_classes))  # (n, n_classes); not np.eye(n_classes)[labels],
    one_hot[np.arange(n_rows), labels] = 1.0  # whose n_classes² identity can dwarf the data
    return X, one_hot
