"""Feature standardization, fitted on the training split only and applied to every split."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .occupancy import load_occupancy


@dataclass(frozen=True, eq=False)
class Standardizer:
    """x -> (x - mean) / std, per column. mean, std: (n_features,) float64."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        """Fit on X (n, n_features): column means and population std (ddof=0).

        A constant column gets std 1 rather than an error: it then maps to all zeros, which
        carries exactly the (absent) information it had, instead of NaN or a huge rescaled
        rounding error (np.std of a constant column can be ~1e-16, not 0).
        """
        X = _as_matrix(X, "X")
        constant = np.ptp(X, axis=0) == 0  # (n_features,)
        std = np.where(constant, 1.0, X.std(axis=0))
        mean = X.mean(axis=0)
        mean.setflags(write=False)
        std.setflags(write=False)
        return cls(mean=mean, std=std)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardize X (n, n_features); returns a new float64 array of the same shape."""
        X = _as_matrix(X, "X")
        if X.shape[1] != self.mean.shape[0]:
            raise DataError(
                f"X has {X.shape[1]} columns but the standardizer was fitted on "
                f"{self.mean.shape[0]}",
                fix="transform arrays with the same columns as the training data",
            )
        return (X - self.mean) / self.std

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-ready mean and std."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def _as_matrix(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(
            f"{name} must be a non-empty 2-D array (n, n_features), got shape {X.shape}",
            fix="pass one row per example and one column per feature",
        )
    if not np.isfinite(X).all():
        raise DataError(
            f"{name} holds NaN or inf values", fix="clean the data before standardizing"
        )
    return X


def standardize_splits(
    arrays: Mapping[str, tuple[np.ndarray, np.ndarray]], fit_on: str = "train"
) -> tuple[Standardizer, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Fit a Standardizer on `arrays[fit_on]`'s X and apply it to every split's X.

    Each value is (X (n, n_features), y (n,) or (n, n_out)). Targets come back as float64
    with shape (n, n_out), (n, 1) for a 1-D y, because the models take (B, n_out) targets.
    """
    if fit_on not in arrays:
        raise DataError(
            f"no split {fit_on!r} to fit on; the splits are {', '.join(map(repr, arrays))}"
        )
    standardizer = Standardizer.fit(arrays[fit_on][0])
    out = {}
    for name, (X, y) in arrays.items():
        Y = np.array(y, dtype=np.float64)  # a writable copy: (n,) or (n, n_out)
        if Y.ndim == 1:
            Y = Y[:, None]  # (n, 1)
        if Y.ndim != 2 or Y.shape[0] != len(X):
            raise DataError(
                f"split {name!r}: y of shape {np.shape(y)} does not match X of shape {np.shape(X)}",
                fix="pass one target row per row of X",
            )
        out[name] = (standardizer.transform(X), Y)
    return standardizer, out


def standardized_occupancy(
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[Standardizer, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The Occupancy splits, standardized with the training set's mean and std.

    Returns (standardizer, {"train"|"test"|"test2": (X (n, 5) float64, Y (n, 1) float64)}).
    """
    splits = load_occupancy(data_dir)
    return standardize_splits({name: (split.X, split.y) for name, split in splits.items()})
