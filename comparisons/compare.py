"""The one comparison helper, used by the oracle, the tests and the reports alike.

It checks shape, then dtype, then values (as tinygrad's ``helper_test_op`` does), and its
verdict names everything a person needs to find the fault: the step, the tensor, the worst
element's index, both values, the error and the allowance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comparisons.tolerances import Tolerance, kind_of, layer_of, tolerance


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
        try:
            return kind_of(self.tensor)
        except KeyError:  # a name that only a broken engine would produce
            return "unknown"

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
        tol = tolerance(b.dtype if b.dtype.kind == "f" else np.float64, tensor)
    if a.shape != b.shape:
        return _mismatch(tensor, engine, f"shape {a.shape} != {b.shape}")
    if a.dtype != b.dtype:
        return _mismatch(tensor, engine, f"dtype {a.dtype} != {b.dtype}")
    work = np.float64  # judge in float64 so the judging itself adds no rounding
    a64, b64 = np.atleast_1d(a.astype(work)), np.atleast_1d(b.astype(work))  # 0-d loss too
    diff = np.abs(a64 - b64)
    diff[np.isnan(a64) != np.isnan(b64)] = np.inf  # NaN on one side only
    diff[np.isnan(a64) & np.isnan(b64)] = 0.0
    diff[(a64 == b64) & np.isinf(a64)] = 0.0  # the same infinity
    scale = float(np.max(np.abs(b64), initial=0.0, where=np.isfinite(b64)))
    allowed = tol.rtol * np.abs(b64) + tol.atol * scale
    if tol.ulps and old_param is not None:
        allowed = allowed + tol.ulps * np.finfo(a.dtype).eps * np.abs(old_param.astype(work))
    allowed = np.maximum(np.nan_to_num(allowed, nan=0.0), np.finfo(work).tiny)
    ratio = diff / allowed
    flat = int(np.nanargmax(ratio)) if ratio.size else 0
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape)) if a.ndim else ()  # () for loss
    worst_ratio = float(ratio.flat[flat]) if ratio.size else 0.0
    max_abs = float(np.max(diff, initial=0.0))
    return Comparison(
        tensor=tensor,
        engine=engine,
        ok=worst_ratio <= 1.0,
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf),
        ratio=worst_ratio,
        index=index,
        scratch_value=float(a64.flat[flat]) if a.size else 0.0,
        reference_value=float(b64.flat[flat]) if b.size else 0.0,
        allowed=float(allowed.flat[flat]) if allowed.size else 0.0,
    )


def _mismatch(tensor: str, engine: str, problem: str) -> Comparison:
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
            out.append(_mismatch(name, engine, f"missing from {engine}'s trace"))
            continue
        old = old_params.get(name[1:]) if old_params and name.startswith("Δ") else None
        out.append(compare(name, value, reference[name], engine, old_param=old))
    extra = sorted(set(reference) - set(scratch))
    if extra:
        out.append(_mismatch(extra[0], engine, f"in {engine}'s trace but not in scratch's"))
    return out
