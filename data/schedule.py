"""The seeded mini-batch schedule that every engine follows, step by step.

Algorithm (enough to reproduce it in another implementation):

1. `rng = numpy.random.default_rng(seed)` (PCG64), created once for the whole schedule.
2. For each epoch e = 0, 1, ..., epochs - 1, in order: `order = rng.permutation(n_rows)` if
   shuffle, else `numpy.arange(n_rows)` (the generator is then never used). Nothing else is
   drawn from the generator.
3. The epoch's batches are `order[i : i + batch_size]` for i = 0, batch_size, 2*batch_size, ...
   The last batch may be shorter; it is kept unless drop_last.
4. Steps are numbered globally from 0 across epochs.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .errors import DataError

_DIGEST_VERSION = "backprop-oracle batch schedule v1"


@dataclass(frozen=True, eq=False)
class Step:
    """One mini-batch: global step `index`, its `epoch` and `batch` within the epoch (all
    0-based), and `rows`, the (B,) int64 row indices into the data, read-only."""

    index: int
    epoch: int
    batch: int
    rows: np.ndarray


@dataclass(frozen=True, eq=False)
class BatchSchedule:
    """Every step of a training run, epoch by epoch; build it with `make_schedule`."""

    n_rows: int
    batch_size: int
    epochs: int
    seed: int
    shuffle: bool
    drop_last: bool
    steps: tuple[Step, ...]
    orders: tuple[np.ndarray, ...]  # each epoch's row order (step 2), read-only

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.steps) // self.epochs

    @cached_property
    def sha256(self) -> str:
        """Digest of the parameters and every step's rows, the same on every platform.

        Hashed, in order: the UTF-8 text "<version>\\n" followed by one "key=value\\n" line
        per parameter (n_rows, batch_size, epochs, seed, shuffle, drop_last; booleans as
        True/False), then for each step the little-endian int64 values (epoch, batch,
        len(rows)) followed by its rows as little-endian int64.
        """
        digest = hashlib.sha256(f"{_DIGEST_VERSION}\n".encode())
        for key, value in self.params().items():
            digest.update(f"{key}={value}\n".encode())
        for step in self.steps:
            digest.update(np.array([step.epoch, step.batch, len(step.rows)], dtype="<i8").tobytes())
            digest.update(step.rows.astype("<i8").tobytes())
        return digest.hexdigest()

    def params(self) -> dict[str, Any]:
        """The arguments that produced this schedule."""
        return {
            "n_rows": self.n_rows,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for reports: parameters, step counts and the digest."""
        return {
            **self.params(),
            "steps": len(self),
            "steps_per_epoch": self.steps_per_epoch,
            "sha256": self.sha256,
        }


def make_schedule(
    n_rows: int,
    batch_size: int,
    epochs: int,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
) -> BatchSchedule:
    """Build the schedule described in this module's docstring."""
    n_rows = _count("n_rows", n_rows)
    batch_size = _count("batch_size", batch_size)
    epochs = _count("epochs", epochs)
    if not _is_int(seed) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    if drop_last and batch_size > n_rows:
        raise DataError(
            f"batch_size={batch_size} > n_rows={n_rows} with drop_last=True leaves no steps",
            fix="lower batch_size or set drop_last=False",
        )

    rng = np.random.default_rng(int(seed))
    # With drop_last, the last start is the last one that still fits a full batch.
    starts = range(0, n_rows - batch_size + 1 if drop_last else n_rows, batch_size)
    steps, orders = [], []
    for epoch in range(epochs):
        order = rng.permutation(n_rows) if shuffle else np.arange(n_rows)
        order = order.astype(np.int64, copy=False)  # (n_rows,)
        order.setflags(write=False)
        orders.append(order)
        for batch, start in enumerate(starts):
            rows = order[start : start + batch_size]  # (B,), B <= batch_size
            rows.setflags(write=False)
            steps.append(Step(index=len(steps), epoch=epoch, batch=batch, rows=rows))
    return BatchSchedule(
        n_rows=n_rows,
        batch_size=batch_size,
        epochs=epochs,
        seed=int(seed),
        shuffle=bool(shuffle),
        drop_last=bool(drop_last),
        steps=tuple(steps),
        orders=tuple(orders),
    )


def _is_int(value: object) -> bool:
    # bool is an int subclass, but seed=True is surely a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _count(name: str, value: object) -> int:
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        raise DataError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)  # type: ignore[arg-type]
