"""A chunk's comparisons as one matrix per reference: a row per step, each tensor's elements
one after the other. A step whose every tensor is within its allowance is done; any other is
left to be compared on its own, with the full story of what failed."""

from __future__ import annotations

import numpy as np

from comparisons.oracle.compare import TINY, TraceComparison, quiet


@quiet
def compare_rows(
    ours: list[dict], allowed: list[dict], theirs: dict[str, list], names: list[str]
) -> dict[str, list[TraceComparison | None]]:
    """Per reference, each step's comparison of its trace in ``theirs[reference]`` against
    ``ours`` (same steps, same order; every trace holding ``names``) within ``allowed``; None
    for a step that fails somewhere. A reference whose traces do not stack (a missing name, a
    shape or a dtype unlike ours) is left out: its steps are compared one by one."""
    like = ours[0]
    if any(np.size(like[n]) == 0 for n in names):
        return {}
    try:  # every step's tensors and allowances shaped as the first step's tensors
        a = matrix(ours, names, like, exact=False)
        limit = np.maximum(matrix(allowed, names, like, exact=False), TINY)
    except (ValueError, TypeError):  # shapes differ: each step on its own
        return {}
    starts = np.cumsum([0] + [np.size(like[n]) for n in names[:-1]])
    out = {}
    for name, traces in theirs.items():
        if any(tr is None or list(tr) != names for tr in traces):
            continue
        try:
            b = matrix(traces, names, like)
        except (ValueError, TypeError):  # a shape or dtype differs: judged step by step
            continue
        out[name] = _segments(a, b, limit, starts, names)
    return out


def matrix(traces: list[dict], names: list[str], like: dict, exact: bool = True) -> np.ndarray:
    """Traces as a float64 matrix, a row per step and each tensor's elements one after the
    other. Every tensor must have the shape of ``like``'s (ValueError otherwise) and, if
    ``exact``, its dtype too (TypeError otherwise)."""
    blocks = []
    for n in names:
        if exact:
            stacked = np.stack([t[n] for t in traces], dtype=like[n].dtype, casting="no")
        else:
            stacked = np.stack([t[n] for t in traces])
        if stacked.shape[1:] != np.shape(like[n]):
            raise ValueError(f"{n}: shape {stacked.shape[1:]}, not {np.shape(like[n])}")
        blocks.append(stacked.reshape(len(traces), -1))
    return np.concatenate(blocks, axis=1, dtype=np.float64)


def _segments(a, b, limit, starts, names) -> list[TraceComparison | None]:
    """Each row's comparison, a tensor per segment of the columns: the worst ratio to the
    allowance, the max |a - b| and that over the tensor's scale; None for a row where a
    tensor fails (or is not finite), which is compared again on its own."""
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf: judged on its own
        diff = np.abs(a - b)
        ratio = np.maximum.reduceat(diff / limit, starts, axis=1)
        max_abs = np.maximum.reduceat(diff, starts, axis=1)
        scale = np.maximum.reduceat(np.abs(b), starts, axis=1)
        scaled = max_abs / np.where(scale > 0, scale, 1.0)
    max_rel = np.where(scale > 0, scaled, np.where(max_abs > 0, np.inf, 0.0))
    ok = (ratio <= 1.0).all(axis=1)  # a NaN fails
    return [
        TraceComparison(names, ratio[i], max_abs[i], max_rel[i], []) if ok[i] else None
        for i in range(len(ok))
    ]
