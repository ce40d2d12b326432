"""Each engine's own copy: read-only views for the references, and scratch's inputs checked
unchanged after its step (an in-place write is a divergence in itself, reported before any
tensor comparison)."""

from __future__ import annotations

import numpy as np

from comparisons.oracle.compare import Comparison, mismatch
from comparisons.run.under_test import SCRATCH_NAME
from data.schedule import Step

# Where to look for an in-place write when re-running the step could not name the writer.
IN_PLACE = "scratch/training.py:train_step and what it calls (an in-place write to an input)"


def read_only(array: np.ndarray) -> np.ndarray:
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


def in_place_writes(params: dict, state: dict, pristine: dict, step: Step) -> list[Comparison]:
    """Scratch's inputs after its step against the copies taken before it: any change is an
    in-place write."""
    changed = [k for k, v in {**params, **state}.items() if not same_bits(v, pristine[k])]
    return [
        mismatch(k, SCRATCH_NAME, f"scratch modified {k} in place during step {step.index}")
        for k in changed
    ]


def same_bits(value, copy: np.ndarray) -> bool:
    """Whether ``value`` still holds exactly the bits of ``copy`` (a NaN included)."""
    value = np.asarray(value)
    if value.shape != copy.shape or value.dtype != copy.dtype:
        return False
    if value.flags.c_contiguous and value.ndim:
        return bool(np.array_equal(value.view(np.uint8), copy.view(np.uint8)))
    return bool(np.array_equal(value, copy, equal_nan=True))
