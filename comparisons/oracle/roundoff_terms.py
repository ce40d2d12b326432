"""The algebra every allowance rule of ``roundoff.py`` is written in: γ_n, the steps'
records, each step's tensor as a stack of matrices (and its transposes and sums), and a
library function's term."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comparisons.oracle.library_error import library_units
from comparisons.oracle.tolerances import ROUNDOFF, Roundoff
from scratch.config import MLP, Optimizer

Arrays = dict[str, np.ndarray]


def gamma(n: int, u: float) -> float:
    """γ_n = n·u / (1 - n·u): the relative error bound of a sum of n products."""
    return n * u / (1.0 - n * u)


@dataclass
class RoundoffStep:
    """One lockstep step as scratch saw it: the network, optimizer, parameters and optimizer
    state before the step, and the batch."""

    mlp: MLP
    optimizer: Optimizer
    params: Arrays
    state: dict
    X: np.ndarray
    Y: np.ndarray


@dataclass
class RoundoffSteps:
    """K steps of one batch shape, stacked: every array has the steps as its first axis
    (``params["W1"]`` is (K, n_0, n_1), ``X`` is (K, B, n_0), ``t`` the counts before each
    step, (K,)). The allowances of K steps are computed in one pass over them."""

    mlp: MLP
    optimizer: Optimizer
    params: Arrays
    state: Arrays  # the optimizer's buffers, without t
    t: np.ndarray
    X: np.ndarray
    Y: np.ndarray

    @classmethod
    def stack(cls, steps: list[RoundoffStep]) -> RoundoffSteps:
        """Stack steps of one batch shape; ValueError where their shapes differ."""
        first = steps[0]
        buffers = [n for n in first.state if n != "t"]
        return cls(
            first.mlp,
            first.optimizer,
            {p: np.stack([s.params[p] for s in steps]) for p in first.params},
            {n: np.stack([s.state[n] for s in steps]) for n in buffers},
            np.array([int(s.state.get("t", 0)) for s in steps]),
            np.stack([s.X for s in steps]),
            np.stack([s.Y for s in steps]),
        )


def library_term(r: Roundoff, function: str) -> float:
    """u times ``function``'s measured error in r's dtype: the allowance's library term."""
    dtype = next(d for d, known in ROUNDOFF.items() if known.unit == r.unit)
    return library_units(dtype, function) * r.unit


def matrices(array: np.ndarray) -> np.ndarray:
    """A stacked tensor in float64 as a stack of matrices: (K,) -> (K, 1, 1), (K, n) ->
    (K, 1, n), (K, r, c) as it is."""
    a = np.asarray(array, np.float64)
    return a.reshape(a.shape[:1] + (1,) * (3 - a.ndim) + a.shape[1:])


def transposed(a: np.ndarray) -> np.ndarray:
    """Each step's matrix transposed."""
    return np.swapaxes(a, -1, -2)


def row_sums(a: np.ndarray) -> np.ndarray:
    """Each step's sum over its rows, kept as a row: (K, B, n) -> (K, 1, n)."""
    return a.sum(axis=-2, keepdims=True)


def totals(a: np.ndarray) -> np.ndarray:
    """Each step's sum over every element, kept as (K, 1, 1)."""
    return a.sum(axis=(-2, -1), keepdims=True)
