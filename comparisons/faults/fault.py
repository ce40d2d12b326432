"""A fault of the catalogue, and the small problem every fault is run on.

``catalogue.py`` explains what a fault is; this module holds the record, so that the catalogue
and its parts (``options.py``) can share it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import scratch.activations
import scratch.losses
import scratch.network
import scratch.optimizers
import scratch.training

# The fast oracle's problem: 12 synthetic rows, batches of 5 (the last one has 2 rows), two
# epochs, network (4, 6, 5, 1). Small enough that the whole catalogue runs in seconds.
FAST_SPEC = {
    "dataset": "synthetic",
    "synthetic_rows": 12,
    "synthetic_features": 4,
    "hidden": (6, 5),
    "activation": "sigmoid",
    "loss": "bce_logits",
    "output": "identity",
    "optimizer": "sgd",
    "lr": 0.1,
    "epochs": 2,
    "batch_size": 5,
}


@dataclass(frozen=True)
class Fault:
    name: str
    category: str  # activation, loss, backward, optimizer, dropout, batch_norm, data, precision
    description: str
    patch: Callable[[], contextlib.AbstractContextManager]
    expected_tensor: str  # the first tensor, in dataflow order, that the fault changes
    spec: dict = field(default_factory=dict)  # run-spec changes under which the fault shows
    equivalent: bool = False  # cannot change behaviour (a test proves it)
    location: str = ""  # the function the fault breaks, where ``patch`` cannot say
    # An engine-side fault: the broken engine under test, ``module:factory`` (a bug in what an
    # engine keeps but does not report, or in its evaluation, which no patch of scratch makes:
    # scratch is complete, and its state is its trace); ``patch`` then changes nothing.
    engine: str = ""

    def run_spec(self) -> dict:
        return {**FAST_SPEC, **self.spec}

    @property
    def where(self) -> str:
        """``scratch/<module>.py:<function>``: the function the fault breaks."""
        return getattr(self.patch, "where", self.location)

    @property
    def evaluation(self) -> bool:
        """Whether the fault is in the final evaluation (its tensor one of evaluation's)."""
        return self.expected_tensor.endswith(", evaluation)")


# The scratch modules the faults edit.
ACT = scratch.activations
LOSS = scratch.losses
NET = scratch.network
TRAIN = scratch.training
OPT = scratch.optimizers
