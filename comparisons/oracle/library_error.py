"""Each framework's measured error for the elementwise functions the allowances use.

The allowances (``roundoff.py``) give a value computed by a library function (exp, log1p,
tanh, the logistic, softplus, sqrt, …) an error of a few units of its result. How many is
measured, not assumed: ``python -m comparisons liberror`` evaluates every function in every
framework (NumPy — scratch's own formulas where NumPy has none —, PyTorch and JAX), per
dtype and per device at hand, on a fixed set of points across the function's domain, and
compares with the exact value (mpmath at 113 bits). It writes the worst error it found,

    max over the points of |f(x) - exact(x)| / (u·max(|exact(x)|, floor))

(u the dtype's unit roundoff; floor 1 for cos, whose allowance is absolute, the smallest
normal number otherwise) into ``library_error.json`` beside this module, and
``docs/library-error.md`` from it. Two are measured per unit of what their allowance scales
with: ``logistic_grad`` (σ(z) - y as each framework's BCE-with-logits loss differentiates
it) per u·(σ(z) + y)·(1 + |z|), since a framework that differentiates log(1 + e^z) through
a log-sum-exp rounds that sum at |z|'s scale (JAX's σ at z = 33 is 1.0 where the exact
value is 1 - 3.6e-15); ``softplus`` (that loss's y = 0 term) per u·(|ℓ| + |z|), since a
framework that writes it as z - z + log(1 + e^z) loses a tiny ℓ entirely.

The allowances take each function's term from that file: the worst over every framework and
device measured, rounded up, and never below 1 (a correctly rounded result is off by up to
u·|exact|). A test re-measures a tenth of the points and fails where the table understates
what the installed frameworks do.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

TABLE = Path(__file__).with_name("library_error.json")

# The functions the allowances take a library term for, and where each is used.
FUNCTIONS = {
    "exp": "softmax's exponentials; the logistic's and softplus's inside",
    "log": "the BCE loss on probabilities (log A); softmax cross-entropy's log-sum-exp",
    "log1p": "the BCE loss on probabilities (log(1 - A) as log1p(-A))",
    "tanh": "the tanh activation",
    "logistic": "the sigmoid activation",
    "softplus": "the BCE-with-logits loss log(1 + e^z) (its y = 0 term, as each framework's "
    "loss computes it), per unit of |ℓ| + |z|",
    "logistic_grad": "BCE-with-logits' gradient σ(z) - y (y = 0 and 1, as each framework's "
    "loss differentiates it), per unit of 1 + |z|",
    "sqrt": "Adam's √v̂",
    "rsqrt": "batch normalization's 1/√(σ² + ε)",
    "cos": "the cosine learning-rate schedule",
    "expm1": "the ELU activation α·(e^Z - 1) below 0",
}


@functools.lru_cache(maxsize=1)
def table() -> dict:
    """The committed table (``library_error.json``)."""
    return json.loads(TABLE.read_text(encoding="utf-8"))


def library_units(dtype: str, function: str) -> float:
    """The allowance's term for ``function`` in ``dtype``: its worst measured error in units
    of u, over every framework and device in the table, rounded up; at least 1."""
    return library_units_of(table(), dtype, function)


def library_units_of(found: dict, dtype: str, function: str) -> float:
    """``library_units`` from the table ``found``."""
    measured = found["measured"][dtype][function]
    return float(max(1, math.ceil(max(measured.values()))))
