"""Scratch's own batching against the schedule: which rows, and how many batches an epoch has.

Scratch batches the data itself (``training.epoch_batches``, ``training.minibatch``), so a
fault there is caught too: exactly, before any arithmetic.
"""

from __future__ import annotations

import numpy as np

import scratch.training
from comparisons.oracle.compare import Comparison, compare, mismatch
from comparisons.run.inputs import RunInputs
from data.schedule import Step


def scratch_batching(
    inputs: RunInputs, step: Step, X: np.ndarray, Y: np.ndarray, batches: list[np.ndarray]
) -> tuple[list[Comparison], tuple[np.ndarray, np.ndarray] | None]:
    """Scratch's own batching of this step (``batches``: what ``epoch_batches`` made of the
    epoch) against the schedule's: the exact checks "rows", "X" and "Y" (and, at an epoch's
    first step, the number of batches both ways), and the batch scratch trains on (None when
    scratch has no such batch)."""
    schedule = inputs.schedule
    count = mismatch(
        "rows",
        "schedule",
        f"scratch made {len(batches)} batches in epoch {step.epoch}; the schedule has "
        f"{schedule.steps_per_epoch} (this is batch {step.batch})",
    )
    if step.batch >= len(batches):
        return [count], None
    rows = np.asarray(batches[step.batch])
    # Looked up on the module at each call, so that a fault patched into scratch shows here.
    Xs, Ys = scratch.training.minibatch(X, Y, rows)
    checks = [
        _exact("rows", rows, step.rows),
        _exact("X", Xs, X[step.rows]),
        _exact("Y", Ys, Y[step.rows]),
    ]
    if step.batch == 0 and len(batches) != schedule.steps_per_epoch:
        checks.insert(0, count)
    return checks, (Xs, Ys) if checks[0].ok else None


def _exact(name: str, ours: np.ndarray, theirs: np.ndarray) -> Comparison:
    """An exact check (the batch is copied, not computed): the full comparison only when it
    fails."""
    ours = np.asarray(ours)
    if ours.shape == theirs.shape and ours.dtype == theirs.dtype and np.array_equal(ours, theirs):
        return Comparison(name, "schedule", True, 0.0, 0.0, 0.0, (), 0.0, 0.0, 0.0)
    return compare(name, ours, theirs, "schedule")
