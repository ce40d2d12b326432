"""How far apart two engines' tensors may be, per dtype, each number with its reason.

Every computed tensor gets an elementwise allowance derived from roundoff
(``roundoff.allowances``): the bound on how far floating-point arithmetic can take one
engine's value from the exact one, following the operations that compute it, on the
magnitudes of their operands (so a sum that cancels is allowed its terms' roundoff and a sum
that does not is held to a few ulps). ``ROUNDOFF`` holds the constants of that bound.

A difference in conventions is never absorbed here: the engines are made to compute the same
thing (see the conventions in docs/numerics.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scratch.trace_schema import kind_of


@dataclass(frozen=True)
class Roundoff:
    unit: float  # u: half the distance from 1 to the next float
    safety: float  # times the first-order bound of one engine
    # where another library fuses a few operations into one kernel (a backward pass's
    # products, a quotient): units of the result. An elementwise function's own error
    # (exp, tanh, sqrt, …) is measured instead: library_error.json (library_error.py).
    library_ulps: float
    reason: str


ROUNDOFF = {
    "float64": Roundoff(
        2.0**-53,
        8.0,
        4.0,
        "two engines each within the first-order bound (×2), higher-order terms and summation "
        "orders the worst case does not foresee (×4); a fused kernel's few roundings (each "
        "library function's own error is measured: library_error.json)",
    ),
    "float32": Roundoff(
        2.0**-24,
        8.0,
        8.0,
        "as float64; fused float32 kernels round more often (each library function's own "
        "error is measured: library_error.json)",
    ),
}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float  # times the largest |entry| of the reference tensor
    reason: str


# Nothing is computed, so nothing may differ.
EXACT = {
    "batch": "row indices: scratch's batching function must give the schedule's rows (another "
    "engine under test is given them)",
    "input": "the batch's X and Y are copied, not computed",
    "counter": "an integer count: nothing to round",
    "dropout_mask": "the step's dropout mask is given to every engine, not computed",
}

# For a tensor the roundoff analysis does not cover (a family added to the trace schema
# without its rule in roundoff.py, or a partial trace): |a - b| <= rtol·|b| + atol·max|b|.
FALLBACK = {
    "float64": Tolerance(1e-9, 1e-11, "~1e7 ulps: any honest order of operations, no cover"),
    "float32": Tolerance(1e-4, 5e-3, "float32 rounding through L layers; sums that cancel"),
}


def tolerance(dtype: str | np.dtype, tensor: str) -> Tolerance:
    """The table's tolerance for ``tensor``: exact for the batch and counters, else FALLBACK."""
    if kind_of(tensor) in EXACT:
        return Tolerance(0.0, 0.0, EXACT[kind_of(tensor)])
    return FALLBACK[np.dtype(dtype).name]


def table_as_dict() -> dict:
    """The tables, JSON-ready, for reports."""
    return {
        dtype: {
            "roundoff": asdict(ROUNDOFF[dtype]),
            "exact": dict(EXACT),
            "fallback": asdict(FALLBACK[dtype]),
        }
        for dtype in ROUNDOFF
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
# Below eps·|loss|/h ≈ 2e-10·|loss| a central difference cannot resolve a gradient at all (a
# clamped, flat loss gives exactly 0 where backprop follows PyTorch's convention): ×50.
FINITE_DIFFERENCES_FLOOR = 1e-8  # × |loss|
