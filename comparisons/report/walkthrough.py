"""The equation walkthrough: the first mini-batch's step, equation by equation, every engine.

For each tensor of the first step's trace, in dataflow order: its equation, its shape, the
first few numbers from each engine side by side, and the largest difference from scratch.
"""

from __future__ import annotations

import numpy as np

from scratch.config import MLP, Optimizer
from scratch.trace_schema import STAGES, describe

N_VALUES = 3  # numbers shown per engine and tensor


def walkthrough(
    traces: dict[str, dict[str, np.ndarray]], mlp: MLP, optimizer: Optimizer
) -> list[dict]:
    """One entry per tensor of scratch's first-step trace, engines side by side."""
    ours = traces["scratch"]
    rows = []
    for tensor, value in ours.items():
        values, max_abs = {}, {}
        for engine, trace in traces.items():
            theirs = trace.get(tensor)
            if theirs is None:
                continue
            values[engine] = [float(v) for v in np.ravel(theirs)[:N_VALUES]]
            if engine != "scratch" and np.shape(theirs) == np.shape(value):
                with np.errstate(invalid="ignore"):  # inf - inf: a diverged run's first step
                    diff = np.abs(np.asarray(theirs, np.float64) - np.asarray(value, np.float64))
                max_abs[engine] = float(np.max(diff, initial=0.0))
        about = describe(tensor, mlp, optimizer)
        rows.append(
            {
                "tensor": tensor,
                "stage": STAGES[about.tensor.kind],
                "kind": about.tensor.kind,
                "layer": about.tensor.layer,
                "equation": about.equation,
                "shape": list(np.shape(value)),
                "values": values,
                "max_abs_vs_scratch": max_abs,
            }
        )
    return rows
