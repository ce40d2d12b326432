"""The one comparison helper, used by the oracle, the tests and the reports alike.

It checks shape, then dtype, then values (as tinygrad's ``helper_test_op`` does), and its
verdict names everything a person needs to find the fault: the step, the tensor, the worst
element's index, both values, the error and the allowance.

No NaN or infinity ever counts as agreement. Where either side holds one, the comparison
fails, and says whether both sides are non-finite in the same places, whatever the kind
in each (``nonfinite="both"``: the engines went non-finite together, which the oracle reports
as a diverged run; an overflow is inf in one engine's order of operations and NaN from
inf - inf in another's) or not (``"differs"``: one finite where the other is not: a
divergence like any other).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from comparisons.oracle.tolerances import Tolerance, tolerance
from comparisons.run.under_test import SCRATCH_NAME
from scratch.trace_schema import kind_of, layer_of

TINY = np.finfo(np.float64).tiny  # the allowance's floor, so that an exact zero still divides


@dataclass(frozen=True)
class Comparison:
    tensor: str
    engine: str  # what the engine under test is compared against: a reference, or itself
    ok: bool
    max_abs: float  # max |a - b|
    max_rel: float  # max |a - b| / max |b|: the error relative to the tensor's scale
    ratio: float  # max over elements of |a - b| / allowed: <= 1 passes
    index: tuple[int, ...]  # the worst element (largest ratio)
    under_test_value: float  # the engine under test's value at the worst element
    reference_value: float
    allowed: float  # the allowance at the worst element
    problem: str = ""  # a shape, dtype or non-finite mismatch, when there is one
    nonfinite: str = ""  # "", or "both" (the same NaN/inf in the same places), or "differs"
    under_test: str = SCRATCH_NAME  # the engine under test's name, as messages give it

    @property
    def kind(self) -> str:
        return kind_or_unknown(self.tensor)

    @property
    def layer(self) -> int | None:
        return layer_or_none(self.tensor)

    def describe(self, where: str = "") -> str:
        """One line: what differs, where, by how much, and what was allowed."""
        head = f"{where}: " if where else ""
        if self.problem:
            if self.engine == self.under_test:
                return f"{head}{self.tensor} ({self.under_test}): {self.problem}"
            return f"{head}{self.tensor} ({self.under_test} vs {self.engine}): {self.problem}"
        idx = "[" + ", ".join(map(str, self.index)) + "]"
        return (
            f"{head}{self.tensor}{idx} {self.under_test}={self.under_test_value:.17g} "
            f"{self.engine}={self.reference_value:.17g} |diff|={self.max_abs:.3g} "
            f"(max over the tensor; {self.max_rel:.3g} of its scale), "
            f"allowed={self.allowed:.3g} here"
        )


def quiet(function):
    """``function`` with NumPy's floating-point warnings off: a comparison's own arithmetic on
    huge or non-finite values (|a - b| over a tiny allowance overflows to inf, which fails, as
    it should) is judged in what it returns, never warned about."""

    @functools.wraps(function)
    def quietly(*args, **kwargs):
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)

    return quietly


@quiet
def compare(
    tensor: str,
    ours: np.ndarray,
    reference: np.ndarray,
    engine: str,
    allowed: np.ndarray | float | None = None,
    *,
    tol: Tolerance | None = None,
    under_test: str = SCRATCH_NAME,
) -> Comparison:
    """Compare the engine under test's ``tensor`` (``ours``; ``under_test`` is its name) with
    a reference's.

    The allowance is elementwise ``allowed`` (from ``roundoff.allowances``), or else ``tol``'s
    rtol·|b| + atol·max|b|, or else the table's tolerance for the tensor's kind.
    """
    a, b = np.asarray(ours), np.asarray(reference)
    if a.shape != b.shape:
        return mismatch(tensor, engine, f"shape {a.shape} != {b.shape}", under_test)
    if a.dtype != b.dtype:
        return mismatch(tensor, engine, f"dtype {a.dtype} != {b.dtype}", under_test)
    # Judged in float64 so the judging adds no rounding; flat, so that the 0-d loss is (1,).
    a64, b64 = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    finite_a, finite_b = np.isfinite(a64), np.isfinite(b64)
    both_finite = bool(finite_a.all() and finite_b.all())
    diff = np.zeros(a64.shape)
    np.subtract(a64, b64, out=diff, where=finite_a & finite_b)
    np.abs(diff, out=diff)
    abs_b = np.abs(np.where(finite_b, b64, 0.0))
    scale = float(abs_b.max(initial=0.0))
    limit = _allowance(allowed, tol, tensor, b.dtype, abs_b, scale, a64.shape)
    ratio = diff / np.maximum(limit, TINY)
    if not both_finite:
        return _nonfinite(tensor, engine, a, a64, b64, finite_a, finite_b, ratio, limit, under_test)
    flat = int(ratio.argmax()) if ratio.size else 0
    max_abs = float(diff.max(initial=0.0))
    worst = float(ratio[flat]) if ratio.size else 0.0
    return Comparison(
        tensor=tensor,
        engine=engine,
        ok=worst <= 1.0,
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf),
        ratio=worst,
        index=flat_index(flat, a.shape),
        under_test_value=float(a64[flat]) if a.size else 0.0,
        reference_value=float(b64[flat]) if b.size else 0.0,
        allowed=float(limit[flat]) if limit.size else 0.0,
        under_test=under_test,
    )


def _allowance(allowed, tol, tensor, dtype, abs_b, scale, shape) -> np.ndarray:
    """The elementwise allowance; a non-finite one (from a non-finite operand) allows nothing."""
    if allowed is not None:
        limit = np.broadcast_to(np.asarray(allowed, np.float64).reshape(-1), shape)
        return np.where(np.isfinite(limit), limit, 0.0)
    tol = tol if tol is not None else _tolerance(dtype, tensor)
    return tol.rtol * abs_b + tol.atol * scale


def _nonfinite(tensor, engine, a, a64, b64, finite_a, finite_b, ratio, limit, under_test):
    """A comparison where either side holds a NaN or an infinity: never agreement. Both
    non-finite in the same places is training diverged, whatever the kind in each (an
    overflowing sum is inf in one engine's order of operations and inf - inf = NaN in
    another's): only where one engine is finite and the other is not do they differ."""
    differing = np.flatnonzero(finite_a != finite_b)
    finite_ok = bool(np.all(ratio[finite_a & finite_b] <= 1.0))
    if differing.size or not finite_ok:
        flat = int(differing[0]) if differing.size else int(np.argmax(ratio))
        verdict = "differs"
        problem = (
            f"{under_test} has {a64[flat]:.17g} at {list(flat_index(flat, a.shape))} where "
            f"{engine} has {b64[flat]:.17g}"
            if differing.size
            else "non-finite in the same places, but the finite values differ"
        )
    else:
        flat = int(np.flatnonzero(~finite_a)[0])
        verdict = "both"
        count = int((~finite_a).sum())
        problem = (
            f"non-finite in both: {count} of {a64.size} values (first at "
            f"{list(flat_index(flat, a.shape))}: {under_test} {a64[flat]}, {engine} "
            f"{b64[flat]})"
        )
    return Comparison(
        tensor=tensor,
        engine=engine,
        ok=False,
        max_abs=np.inf,
        max_rel=np.inf,
        ratio=np.inf,
        index=flat_index(flat, a.shape),
        under_test_value=float(a64[flat]),
        reference_value=float(b64[flat]),
        allowed=float(limit[flat]) if limit.size else 0.0,
        problem=problem,
        nonfinite=verdict,
        under_test=under_test,
    )


def flat_index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The element at position ``flat`` of a C-order array of ``shape``, as an index tuple."""
    return tuple(map(int, np.unravel_index(flat, shape))) if shape else ()


@functools.lru_cache(maxsize=4096)
def _tolerance(dtype: np.dtype, tensor: str) -> Tolerance:
    """The table's tolerance for a tensor of this dtype (float64's for integer arrays)."""
    return tolerance(dtype if dtype.kind == "f" else np.float64, tensor)


EVALUATION_KIND = "evaluation"  # the final evaluation's comparisons: "A3 (test, evaluation)"


@functools.lru_cache(maxsize=4096)
def kind_or_unknown(tensor: str) -> str:
    if tensor.endswith(f", {EVALUATION_KIND})"):
        return EVALUATION_KIND
    try:
        return kind_of(tensor)
    except KeyError:  # a name that only a broken engine would produce
        return "unknown"


@functools.lru_cache(maxsize=4096)
def layer_or_none(tensor: str) -> int | None:
    try:
        return layer_of(tensor)
    except KeyError:
        return None


def mismatch(tensor: str, engine: str, problem: str, under_test: str = SCRATCH_NAME) -> Comparison:
    """A failed comparison that has no values to show: a shape, dtype or presence problem.
    ``engine`` is what the engine under test (``under_test``) was compared against, or the
    engine under test itself where the problem is its own (a write in place, a state kept)."""
    return Comparison(
        tensor,
        engine,
        False,
        np.inf,
        np.inf,
        np.inf,
        (),
        np.nan,
        np.nan,
        0.0,
        problem,
        under_test=under_test,
    )


def assert_traces_agree(
    ours: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    engine: str,
    where: str = "",
    allowed: Mapping[str, np.ndarray] | None = None,
) -> list[Comparison]:
    """Compare two traces tensor by tensor in the first one's (dataflow) order; raise on the
    first disagreement with a message that names it. Returns every comparison when all agree."""
    comparisons = compare_traces(ours, reference, engine, allowed)
    for c in comparisons:
        if not c.ok:
            raise AssertionError(c.describe(where))
    return comparisons


def compare_traces(
    ours: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    engine: str,
    allowed: Mapping[str, np.ndarray] | None = None,
    under_test: str = SCRATCH_NAME,
) -> list[Comparison]:
    """Every tensor of the engine under test's trace (``ours``) against the reference's, in
    its order; ``allowed[name]`` is each tensor's elementwise allowance (the table's where
    absent)."""
    allowed = allowed or {}
    out = []
    for name, value in ours.items():
        if name not in reference:
            out.append(mismatch(name, engine, f"missing from {engine}'s trace", under_test))
            continue
        c = compare(name, value, reference[name], engine, allowed.get(name), under_test=under_test)
        out.append(c)
    extra = sorted(set(reference) - set(ours))
    if extra:
        problem = f"in {engine}'s trace but not in {under_test}'s"
        out.append(mismatch(extra[0], engine, problem, under_test))
    return out


@dataclass
class TraceComparison:
    """A whole trace against a reference's, in a few NumPy passes: per tensor (in the engine
    under test's order) the worst ratio to its allowance, the max |a - b| and that relative to the
    tensor's scale; a full ``Comparison`` only for the tensors that fail."""

    names: list[str]
    ratio: np.ndarray
    max_abs: np.ndarray
    max_rel: np.ndarray
    failed: list[Comparison]


class FlatTrace:
    """The engine under test's trace and its allowances laid out once per step as flat
    vectors, for ``compare_trace_flat`` against each reference in turn; ``under_test``: its
    name, as messages give it."""

    def __init__(
        self,
        trace: dict[str, np.ndarray],
        allowed: Mapping[str, np.ndarray],
        under_test: str = SCRATCH_NAME,
        memory: FlatMemory | None = None,
    ):
        self.trace, self.allowed, self.under_test = trace, allowed, under_test
        self.names = list(trace)
        self.flat = [n for n in self.names if n in allowed]
        arrays = {n: np.asarray(trace[n]) for n in self.flat}
        self.shapes = {n: a.shape for n, a in arrays.items()}
        self.dtypes = {n: a.dtype for n, a in arrays.items()}
        sizes = [max(a.size, 1) for a in arrays.values()]
        self.starts = np.cumsum([0, *sizes[:-1]]).astype(int)
        length = sum(sizes) if self.flat else 0
        self.a, self.limit, *self.work = (memory or FlatMemory()).vectors(length)
        _flat(trace, self.flat, out=self.a)
        _flat(allowed, self.flat, sizes, out=self.limit)
        np.maximum(self.limit, TINY, out=self.limit)


class FlatMemory:
    """The four float64 vectors a ``FlatTrace`` and its comparisons work in (the trace, its
    allowances, two for the arithmetic), kept from one step to the next: a run's steps
    share one trace length, and memory used again costs no page faults. A trace laid out
    in them is good until the next ``FlatTrace`` made with the same memory."""

    def __init__(self) -> None:
        self._vectors: list[np.ndarray] = []

    def vectors(self, length: int) -> list[np.ndarray]:
        if not self._vectors or self._vectors[0].shape != (length,):
            self._vectors = [np.empty(length) for _ in range(4)]
        return self._vectors


@quiet
def compare_trace_flat(
    ours: FlatTrace, reference: dict[str, np.ndarray], engine: str
) -> TraceComparison:
    """``compare_traces`` for the common case, fast: the tensors whose names, shapes and
    dtypes match are compared together as one flat vector, with each tensor's summary
    reduced over its segment; any tensor that fails (or has no allowance, or is not finite)
    is compared again on its own, by ``compare``, for the full story."""
    names, trace, under_test = ours.names, ours.trace, ours.under_test
    ratio, max_abs, max_rel = np.zeros(len(names)), np.zeros(len(names)), np.zeros(len(names))
    theirs = {n: np.asarray(reference[n]) for n in ours.flat if n in reference}
    matching = len(theirs) == len(ours.flat) and all(
        t.shape == ours.shapes[n] and t.dtype == ours.dtypes[n] for n, t in theirs.items()
    )
    slow = [n for n in names if n not in ours.allowed]
    if matching and ours.flat:
        b, work = ours.work
        _flat(theirs, ours.flat, out=b)
        with np.errstate(invalid="ignore"):  # inf - inf: the slow path below explains it
            seg_scale = np.maximum.reduceat(np.abs(b, out=work), ours.starts)
            diff = np.abs(np.subtract(ours.a, b, out=b), out=b)  # |a - b|, in b's place
            seg_abs = np.maximum.reduceat(diff, ours.starts)
            seg_ratio = np.maximum.reduceat(np.divide(diff, ours.limit, out=work), ours.starts)
        at = [names.index(n) for n in ours.flat]
        ratio[at], max_abs[at] = seg_ratio, seg_abs
        scaled = seg_abs / np.where(seg_scale > 0, seg_scale, 1.0)
        max_rel[at] = np.where(seg_scale > 0, scaled, np.where(seg_abs > 0, np.inf, 0.0))
        bad = ~(seg_ratio <= 1.0)  # NaN (a non-finite value) fails too
        slow += [n for n, b_ in zip(ours.flat, bad, strict=True) if b_]
    elif ours.flat:
        slow += ours.flat  # a name, shape or dtype differs: each tensor on its own
    failed = []
    for n in sorted(set(slow), key=names.index):
        if n in reference:
            allowed = ours.allowed.get(n)
            c = compare(n, trace[n], reference[n], engine, allowed, under_test=under_test)
        else:
            c = mismatch(n, engine, f"missing from {engine}'s trace", under_test)
        i = names.index(n)
        ratio[i], max_abs[i], max_rel[i] = c.ratio, c.max_abs, c.max_rel
        if not c.ok:
            failed.append(c)
    extra = sorted(set(reference) - set(trace))
    if extra:
        problem = f"in {engine}'s trace but not in {under_test}'s"
        failed.append(mismatch(extra[0], engine, problem, under_test))
    return TraceComparison(names, ratio, max_abs, max_rel, failed)


def _flat(arrays: Mapping[str, np.ndarray], names: list[str], sizes=None, out=None) -> np.ndarray:
    """The arrays one after the other as one float64 vector (an empty one as one zero); with
    ``sizes``, each broadcast to its size first (a scalar allowance for a whole tensor). Into
    ``out`` where given: each array is cast and copied into its segment in one pass (a
    transposed view, a float32 array: no intermediate copy)."""
    if not names:
        return np.zeros(0)
    parts = [np.asarray(arrays[n]) for n in names]
    lengths = [max(p.size, 1) for p in parts] if sizes is None else list(sizes)
    out = np.empty(sum(lengths)) if out is None else out
    start = 0
    for p, length in zip(parts, lengths, strict=True):
        segment = out[start : start + length]
        start += length
        if p.size == 0:
            segment[...] = 0.0
        elif p.size == length:
            segment.reshape(p.shape)[...] = p  # float64, as np.asarray(p, np.float64) casts
        else:  # a single allowance for the whole tensor, broadcast
            segment[...] = np.asarray(p, np.float64).reshape(-1)
    return out
