"""A chunk's comparisons as one matrix per reference: a row per step, each tensor's elements
one after the other. A step whose every tensor is within its allowance is done; any other is
left to be compared on its own, with the full story of what failed."""

from __future__ import annotations

import numpy as np

from comparisons.oracle.compare import TINY, TraceComparison, quiet


@quiet
def compare_rows(
    ours: list[dict],
    allowed: list[dict],
    theirs: dict[str, list],
    names: list[str],
    memory: RowMemory | None = None,
) -> dict[str, list[TraceComparison | None]]:
    """Per reference, each step's comparison of its trace in ``theirs[reference]`` against
    ``ours`` (same steps, same order; every trace holding ``names``) within ``allowed``; None
    for a step that fails somewhere. A reference whose traces do not stack (a missing name, a
    shape or a dtype unlike ours) is left out: its steps are compared one by one. The
    matrices are laid out in ``memory`` (kept by the caller from chunk to chunk)."""
    like = ours[0]
    if any(np.size(like[n]) == 0 for n in names):
        return {}
    shape = (len(ours), sum(int(np.size(like[n])) for n in names))
    a, limit, b, diff, work = (memory or RowMemory()).matrices(shape)
    try:  # every step's tensors and allowances shaped as the first step's tensors
        matrix(ours, names, like, exact=False, out=a)
        np.maximum(matrix(allowed, names, like, exact=False, out=limit), TINY, out=limit)
    except (ValueError, TypeError):  # shapes differ: each step on its own
        return {}
    starts = np.cumsum([0] + [np.size(like[n]) for n in names[:-1]])
    out = {}
    for name, traces in theirs.items():
        if any(tr is None or list(tr) != names for tr in traces):
            continue
        try:
            matrix(traces, names, like, out=b)
        except (ValueError, TypeError):  # a shape or dtype differs: judged step by step
            continue
        out[name] = _segments(a, b, limit, starts, names, diff, work)
    return out


class RowMemory:
    """The five float64 matrices ``compare_rows`` works in (the engine's traces, their
    allowances, a reference's traces, two for the arithmetic), kept from one chunk to the
    next: memory used again costs no page faults. A chunk's matrices are good until the next
    ``compare_rows`` with the same memory."""

    def __init__(self) -> None:
        self._memory = np.empty((5, 0))

    def matrices(self, shape: tuple[int, int]) -> list[np.ndarray]:
        size = shape[0] * shape[1]
        if self._memory.shape[1] < size:
            self._memory = np.empty((5, size))
        return [row[:size].reshape(shape) for row in self._memory]


def matrix(
    traces: list[dict], names: list[str], like: dict, exact: bool = True, out=None
) -> np.ndarray:
    """Traces as a float64 matrix (into ``out`` where given), a row per step and each
    tensor's elements one after the other. Every tensor must have the shape of ``like``'s
    (ValueError otherwise) and, if ``exact``, its dtype too (TypeError otherwise); a value
    float64 cannot take by a same-kind cast (a complex number, a string) is a TypeError."""
    sizes = [int(np.size(like[n])) for n in names]
    out = np.empty((len(traces), sum(sizes))) if out is None else out
    start = 0
    for n, size in zip(names, sizes, strict=True):
        shape = np.shape(like[n])
        values = [t[n] for t in traces]
        if exact and any(np.asarray(v).dtype != like[n].dtype for v in values):
            raise TypeError(f"{n}: a dtype unlike {like[n].dtype}")
        # the steps' tensors stacked straight into their columns, seen as (K, *shape) (a
        # split of the rows' contiguous axis: a view); ValueError where one is shaped unlike
        # ``like``'s
        columns = out[:, start : start + size]
        block = columns.reshape((len(traces), *shape))
        np.stack(values, out=block, casting="same_kind")
        if not np.may_share_memory(block, columns):  # (were it ever a copy)
            columns[...] = block.reshape(len(traces), size)
        start += size
    return out


def _segments(a, b, limit, starts, names, diff=None, work=None) -> list[TraceComparison | None]:
    """Each row's comparison, a tensor per segment of the columns: the worst ratio to the
    allowance, the max |a - b| and that over the tensor's scale; None for a row where a
    tensor fails (or is not finite), which is compared again on its own. ``diff`` and
    ``work``: matrices of a's shape to compute in (fresh ones where not given)."""
    diff = np.empty(a.shape) if diff is None else diff
    work = np.empty(a.shape) if work is None else work
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf: judged on its own
        np.abs(np.subtract(a, b, out=diff), out=diff)
        ratio = np.maximum.reduceat(np.divide(diff, limit, out=work), starts, axis=1)
        max_abs = np.maximum.reduceat(diff, starts, axis=1)
        scale = np.maximum.reduceat(np.abs(b, out=work), starts, axis=1)
        scaled = max_abs / np.where(scale > 0, scale, 1.0)
    max_rel = np.where(scale > 0, scaled, np.where(max_abs > 0, np.inf, 0.0))
    ok = (ratio <= 1.0).all(axis=1)  # a NaN fails
    return [
        TraceComparison(names, ratio[i], max_abs[i], max_rel[i], []) if ok[i] else None
        for i in range(len(ok))
    ]
