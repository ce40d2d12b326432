"""The equation walkthrough: the first mini-batch's step, equation by equation, every engine.

For each tensor of the first step's trace, in dataflow order: its equation, its shape, the
first few numbers from each engine side by side, and the largest difference from the engine
under test.
"""

from __future__ import annotations

import numpy as np

from scratch.config import MLP, Optimizer
from scratch.trace_equations import describe
from scratch.trace_schema import STAGES

N_VALUES = 3  # numbers shown per engine and tensor


def _numbers(value) -> np.ndarray | None:
    """``value`` as float64 numbers, or None where it is missing or not numbers."""
    array = np.asarray(value) if value is not None else None
    if array is None or array.dtype.kind not in "biuf":
        return None
    return array.astype(np.float64)


def walkthrough(
    traces: dict[str, dict[str, np.ndarray]], mlp: MLP, optimizer: Optimizer
) -> list[dict]:
    """One entry per tensor of the engine under test's first-step trace (the first of
    ``traces``, which are keyed by the engines' names), engines side by side."""
    under_test = next(iter(traces), None)
    ours = traces[under_test] if under_test is not None else {}
    rows = []
    for tensor, value in ours.items():
        try:
            about = describe(tensor, mlp, optimizer)
        except KeyError:  # a name outside the schema: a disagreement, shown as such elsewhere
            continue
        values, max_abs = {}, {}
        for engine, trace in traces.items():
            theirs = _numbers(trace.get(tensor))
            if theirs is None:  # absent, or not numbers (another engine's bug)
                continue
            values[engine] = [float(v) for v in np.ravel(theirs)[:N_VALUES]]
            mine = _numbers(value)
            if engine != under_test and mine is not None and theirs.shape == mine.shape:
                with np.errstate(invalid="ignore"):  # inf - inf: a diverged run's first step
                    diff = np.abs(theirs - mine)
                max_abs[engine] = float(np.max(diff, initial=0.0))
        equation = about.equation
        mask = _numbers(value) if about.tensor.kind == "dropout_mask" else None
        if mask is not None:  # the mask's effect, in words
            dropped = int(np.count_nonzero(mask == 0))
            equation += f"  ({dropped} of {mask.size} units dropped at this step)"
        rows.append(
            {
                "tensor": tensor,
                "stage": STAGES[about.tensor.kind],
                "kind": about.tensor.kind,
                "layer": about.tensor.layer,
                "equation": equation,
                "shape": list(np.shape(value)),
                "values": values,
                "max_abs_vs_under_test": max_abs,
            }
        )
    return rows
