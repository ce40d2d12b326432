"""How far apart two engines' tensors may be: one table per dtype, one row per tensor kind.

An element passes when

    |a - b| <= rtol·|b| + atol·max|b| + ulps·eps·|θ_old|

a is scratch's value, b the reference's. ``atol`` is scaled by the tensor's largest entry
so that entries near zero (where relative error means nothing) are judged against the
tensor's own magnitude. The last term exists for updates only: ΔW = W_new - W_old is a
difference of two nearly equal numbers, so each engine's rounding of W_new (half an ulp of
|W|) appears in ΔW however exact the update itself was.

These numbers are the size of honest floating-point disagreement between NumPy, PyTorch and
XLA: different summation orders in matrix products and reductions, fused versus separate
operations, different but equivalent formulas (e.g. PyTorch's Adam folds the bias
corrections into the step size). A difference in conventions is never absorbed here: the
engines are made to compute the same thing (see the README's conventions table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratch.trace_schema import kind_of


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float  # times the largest |entry| of the reference tensor
    reason: str
    ulps: float = 0.0  # times eps·|θ_old|, for updates


# Before any arithmetic: scratch must read exactly the schedule's rows, and the same rows of
# X and Y. Nothing is computed, so nothing may differ.
EXACT = {
    "batch": Tolerance(0.0, 0.0, "row indices: scratch's batching must match the schedule"),
    "input": Tolerance(0.0, 0.0, "the batch's X and Y are copied, not computed"),
}

# float64: eps = 2.2e-16. Every rtol is at most 1e-9.
FLOAT64 = {
    **EXACT,
    "forward": Tolerance(
        1e-10, 1e-12, "matmul and exp/log in another order or library: ~10 ulps, ×1e4 margin"
    ),
    "loss": Tolerance(1e-10, 0.0, "a mean of B terms, summed in another order"),
    "error_term": Tolerance(
        1e-9, 1e-11, "products of the forward values' rounding through L layers of matmuls"
    ),
    "gradient": Tolerance(
        1e-9, 1e-11, "a sum over the batch in another order; cancellation near zero entries"
    ),
    "update": Tolerance(
        1e-9, 1e-11, "the gradient's error, plus the rounding of W_new seen in W_new - W_old", 4.0
    ),
    "optimizer_state": Tolerance(
        1e-9, 1e-11, "the gradient's error, carried through β·m + (1-β)·g and g²"
    ),
    "parameter": Tolerance(
        1e-9, 1e-11, "W_old + ΔW carries the update's error (b_new = Δb at step 0)", 4.0
    ),
}

# float32: eps = 1.2e-7. Each engine rounds every intermediate to float32, and where a value
# is a small difference of large terms (A - Y near a perfect fit, a bias gradient Σ dZ that
# cancels, Z = A @ W + b near zero) the rounding of the terms is large against the result:
# relative to a tensor's own scale, honest float32 differences reach ~2e-3 in the lockstep
# matrix (the README gives the measured worst per kind). A wrong equation is off by O(1).
FLOAT32 = {
    **EXACT,
    "forward": Tolerance(1e-5, 1e-4, "matmul and exp in float32; Z = A @ W + b can cancel"),
    "loss": Tolerance(1e-3, 0.0, "a mean of B float32 terms; MSE near a perfect fit cancels"),
    "error_term": Tolerance(1e-4, 5e-3, "float32 rounding through L layers; A - Y cancels"),
    "gradient": Tolerance(1e-4, 5e-3, "a float32 sum over the batch that can cancel"),
    "update": Tolerance(
        1e-4, 5e-3, "the gradient's error, plus the rounding of W_new seen in W_new - W_old", 4.0
    ),
    "optimizer_state": Tolerance(1e-4, 5e-3, "the gradient's error through the moment updates"),
    "parameter": Tolerance(
        1e-4, 1e-4, "W_old + ΔW carries the update's error (b_new = Δb at step 0)", 4.0
    ),
}

TABLES = {"float64": FLOAT64, "float32": FLOAT32}


def tolerance(dtype: str | np.dtype, tensor: str) -> Tolerance:
    return TABLES[np.dtype(dtype).name][kind_of(tensor)]


def table_as_dict() -> dict:
    """Both tables, JSON-ready, for reports."""
    return {
        dtype: {kind: vars(tol) for kind, tol in table.items()} for dtype, table in TABLES.items()
    }


# Drift: engines train freely, so their rounding differences compound; the final losses on
# each split are compared, not the step-by-step tensors.
DRIFT = {
    "float64": Tolerance(
        1e-6, 0.0, "1e-16 rounding differences grow over a free run, to ~1e-10 in ours"
    ),
    "float32": Tolerance(
        2e-2, 0.0, "float32 rounding compounds over thousands of free-running steps"
    ),
}

# Central differences in float64 with h = 1e-6: truncation O(h²) and rounding O(eps/h) leave
# ~1e-10 of the loss's scale; 1e-6 of each tensor's scale is a wide margin, while a wrong
# equation is off by O(1).
FINITE_DIFFERENCES = Tolerance(1e-6, 1e-6, "central differences, h = 1e-6, float64")
