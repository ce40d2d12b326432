"""The one comparison helper, used by the oracle, the tests and the reports alike.

It checks shape, then dtype, then values (as tinygrad's ``helper_test_op`` does), and its
verdict names everything a person needs to find the fault: the step, the tensor, the worst
element's index, both values, the error and the allowance.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from comparisons.oracle.tolerances import Tolerance, tolerance
from scratch.trace_schema import kind_of, layer_of

_TINY = np.finfo(np.float64).tiny  # the allowance's floor, so that an exact zero still divides
_BOUNDED = 1e300  # (rtol + atol)·max|b| below this: rtol·|b| + atol·max|b| cannot overflow


@dataclass(frozen=True)
class Comparison:
    tensor: str
    engine: str  # the reference compared against scratch
    ok: bool
    max_abs: float  # max |a - b|
    max_rel: float  # max |a - b| / max |b|: the error relative to the tensor's scale
    ratio: float  # max over elements of |a - b| / allowed: <= 1 passes
    index: tuple[int, ...]  # the worst element (largest ratio)
    scratch_value: float
    reference_value: float
    allowed: float  # the allowance at the worst element
    problem: str = ""  # a shape or dtype mismatch, when there is one

    @property
    def kind(self) -> str:
        return _kind(self.tensor)

    @property
    def layer(self) -> int | None:
        return layer_of(self.tensor)

    def describe(self, where: str = "") -> str:
        """One line: what differs, where, by how much, and what was allowed."""
        head = f"{where}: " if where else ""
        if self.problem:
            return f"{head}{self.tensor} (scratch vs {self.engine}): {self.problem}"
        idx = "[" + ", ".join(map(str, self.index)) + "]"
        return (
            f"{head}{self.tensor}{idx} scratch={self.scratch_value:.17g} "
            f"{self.engine}={self.reference_value:.17g} |diff|={self.max_abs:.3g} "
            f"(max over the tensor; {self.max_rel:.3g} of its scale), "
            f"allowed={self.allowed:.3g} here"
        )


def compare(
    tensor: str,
    scratch: np.ndarray,
    reference: np.ndarray,
    engine: str,
    tol: Tolerance | None = None,
    old_param: np.ndarray | None = None,
) -> Comparison:
    """Compare scratch's ``tensor`` with a reference's; ``old_param`` for updates (ΔW)."""
    a, b = np.asarray(scratch), np.asarray(reference)
    if tol is None:
        tol = _tolerance(b.dtype, tensor)
    if a.shape != b.shape:
        return mismatch(tensor, engine, f"shape {a.shape} != {b.shape}")
    if a.dtype != b.dtype:
        return mismatch(tensor, engine, f"dtype {a.dtype} != {b.dtype}")
    work = np.float64  # judge in float64 so the judging itself adds no rounding
    # Flat float64 views (a copy only where the dtype differs): the 0-d loss becomes (1,), and
    # a flat index is the same element as in ``a.flat``. Nothing below writes into them; the
    # arrays computed here are worked on in place, each pass over the data counts for wide
    # networks.
    a64, b64 = np.asarray(a, dtype=work).reshape(-1), np.asarray(b, dtype=work).reshape(-1)
    diff = np.subtract(a64, b64)
    np.abs(diff, out=diff)
    max_abs = float(diff.max(initial=0.0))
    # A finite max |a - b| means every element of both tensors is finite (an inf or NaN on
    # either side makes its difference inf or NaN), so the NaN and inf rules have nothing to
    # do: that is nearly every comparison.
    finite = math.isfinite(max_abs)
    if not finite:
        max_abs = _nonfinite_rules(diff, a64, b64)
    abs_b = np.abs(b64)
    if finite:
        scale = float(abs_b.max(initial=0.0))
    else:  # the largest finite |b|
        scale = float(np.max(abs_b, initial=0.0, where=np.isfinite(b64)))
    allowed = _allowance(tol, abs_b, scale, a.dtype, old_param, finite)
    ratio = np.divide(diff, allowed, out=diff)  # no NaN: diff has none left, and allowed > 0
    flat = int(ratio.argmax()) if ratio.size else 0
    worst_ratio = float(ratio[flat]) if ratio.size else 0.0
    index = tuple(map(int, np.unravel_index(flat, a.shape))) if a.ndim else ()  # () for loss
    return Comparison(
        tensor=tensor,
        engine=engine,
        ok=worst_ratio <= 1.0,
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf),
        ratio=worst_ratio,
        index=index,
        scratch_value=float(a64[flat]) if a.size else 0.0,
        reference_value=float(b64[flat]) if b.size else 0.0,
        allowed=float(allowed[flat]) if allowed.size else 0.0,
    )


def _allowance(
    tol: Tolerance,
    abs_b: np.ndarray,
    scale: float,
    dtype: np.dtype,
    old_param: np.ndarray | None,
    finite: bool,
) -> np.ndarray:
    """rtol·|b| + atol·max|b| (+ ulps·eps·|θ_old| for updates), floored at ``_TINY``,
    computed in ``abs_b``'s memory. A NaN term counts as 0 and an infinite one as the largest
    float; when b is finite and rtol + atol is small enough that no sum can overflow, there
    is neither, and the pass that looks for them is skipped."""
    allowed = abs_b
    allowed *= tol.rtol
    allowed += tol.atol * scale
    ulps = bool(tol.ulps) and old_param is not None
    if ulps:
        old = np.abs(np.asarray(old_param, dtype=np.float64).reshape(-1))
        allowed += tol.ulps * np.finfo(dtype).eps * old
    bounded = finite and not ulps and (tol.rtol + tol.atol) * scale < _BOUNDED
    if not bounded and not math.isfinite(allowed.max(initial=0.0)):
        allowed = np.nan_to_num(allowed, nan=0.0)
    return np.maximum(allowed, _TINY, out=allowed)


def _nonfinite_rules(diff: np.ndarray, a64: np.ndarray, b64: np.ndarray) -> float:
    """The rules for an inf or NaN on either side, applied to ``diff`` in place: a NaN on one
    side only fails (inf), NaN on both sides and the same infinity on both agree (0).
    Returns the new max |a - b|."""
    nan_a, nan_b = np.isnan(a64), np.isnan(b64)
    diff[nan_a != nan_b] = np.inf
    diff[nan_a & nan_b] = 0.0
    diff[(a64 == b64) & np.isinf(a64)] = 0.0
    return float(np.max(diff, initial=0.0))


@functools.lru_cache(maxsize=4096)
def _tolerance(dtype: np.dtype, tensor: str) -> Tolerance:
    """The table's tolerance for a tensor of this dtype (float64's for integer arrays)."""
    return tolerance(dtype if dtype.kind == "f" else np.float64, tensor)


@functools.lru_cache(maxsize=4096)
def _kind(tensor: str) -> str:
    try:
        return kind_of(tensor)
    except KeyError:  # a name that only a broken engine would produce
        return "unknown"


def mismatch(tensor: str, engine: str, problem: str) -> Comparison:
    """A failed comparison that has no values to show: a shape, dtype or presence problem."""
    return Comparison(
        tensor, engine, False, np.inf, np.inf, np.inf, (), np.nan, np.nan, 0.0, problem
    )


def assert_traces_agree(
    scratch: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    engine: str,
    where: str = "",
    old_params: dict[str, np.ndarray] | None = None,
) -> list[Comparison]:
    """Compare two traces tensor by tensor in scratch's (dataflow) order; raise on the first
    disagreement with a message that names it. Returns every comparison when all agree."""
    comparisons = compare_traces(scratch, reference, engine, old_params)
    for c in comparisons:
        if not c.ok:
            raise AssertionError(c.describe(where))
    return comparisons


def compare_traces(
    scratch: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    engine: str,
    old_params: dict[str, np.ndarray] | None = None,
) -> list[Comparison]:
    """Every tensor of scratch's trace against the reference's, in scratch's order."""
    out = []
    for name, value in scratch.items():
        if name not in reference:
            out.append(mismatch(name, engine, f"missing from {engine}'s trace"))
            continue
        old = old_params.get(name[1:]) if old_params and name.startswith("Δ") else None
        out.append(compare(name, value, reference[name], engine, old_param=old))
    extra = sorted(set(reference) - set(scratch))
    if extra:
        out.append(mismatch(extra[0], engine, f"in {engine}'s trace but not in scratch's"))
    return out
