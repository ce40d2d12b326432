"""From a run spec to everything one run needs: data, network, first weights, batch schedule.

Every engine of a run is fed from one ``RunInputs``, so all of them see the same arrays, the
same initial parameters and the same mini-batches.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comparisons.run.interrupts import stop_if_signalled
from comparisons.run.spec import RunSpec, SpecError
from data import (
    EXPECTED_ROWS,
    FEATURES,
    BatchSchedule,
    dataset_info,
    load_occupancy,
    make_schedule,
    make_synthetic,
)
from data.dropout import keep_masks
from data.schedule import Step
from data.standardize import standardize_splits
from scratch.config import MLP, Optimizer
from scratch.initializers import init_params
from scratch.trace_schema import OPTIMIZER_STATE

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RunInputs:
    """Everything a run is made of. The arrays are read-only: a run hands each engine its
    own copies (``start``), so that an engine that writes into its inputs cannot change
    what another engine, or a later phase of the run, starts from."""

    spec: RunSpec
    splits: dict[str, Arrays]  # "train" first, then the evaluation splits; (X, Y) in spec.dtype
    dataset: dict[str, Any]  # JSON-ready: name, files and digests, row counts
    mlp: MLP
    optimizer: Optimizer
    params0: dict[str, np.ndarray]
    schedule: BatchSchedule

    @property
    def train(self) -> Arrays:
        return self.splits["train"]

    def start(self) -> dict[str, np.ndarray]:
        """Fresh, writable copies of the first parameters, for an engine to own."""
        return {p: np.array(v) for p, v in self.params0.items()}

    def step_keywords(self, step: Step) -> dict[str, dict[str, np.ndarray]]:
        """What every engine's ``step`` is given besides X and Y, as keyword arguments: the
        step's dropout masks (``data/dropout.py``, read-only) as ``masks``; nothing without
        dropout."""
        if not self.mlp.dropout:
            return {}
        masks = keep_masks(
            self.spec.seed,
            step.index,
            len(step.rows),
            self.mlp.sizes[1:-1],
            self.mlp.dropout,
            self.spec.dtype,
        )
        for mask in masks.values():
            mask.flags.writeable = False
        return {"masks": masks}


def load_splits(spec: RunSpec, data_dir: str | None = None) -> tuple[dict[str, Arrays], dict]:
    """The data set's splits, standardized on train, plus its JSON-ready description.

    The synthetic set's test split is drawn with the next seed, so it is new data from the
    same rule.
    """
    if spec.dataset == "occupancy":
        loaded = load_occupancy(data_dir)
        raw = {name: (split.X, split.y) for name, split in loaded.items()}
        info = dataset_info(loaded)
    else:
        draw = {"n_features": spec.synthetic_features, "n_classes": spec.synthetic_classes}
        raw = {
            "train": make_synthetic(spec.synthetic_rows, seed=spec.seed, **draw),
            "test": make_synthetic(spec.synthetic_rows, seed=spec.seed + 1, **draw),
        }
        info = {
            "name": "synthetic",
            "rows": spec.synthetic_rows,
            "features": spec.synthetic_features,
            "classes": spec.synthetic_classes,
            "splits": {name: {"rows": len(X)} for name, (X, _) in raw.items()},
        }
    _, splits = standardize_splits(raw)
    return {
        name: (X.astype(spec.dtype), _targets(spec, Y).astype(spec.dtype))
        for name, (X, Y) in splits.items()
    }, info


def _targets(spec: RunSpec, Y: np.ndarray) -> np.ndarray:
    """0/1 targets (n, 1) become one-hot (n, 2) when the loss is softmax cross-entropy."""
    if spec.n_outputs == 2 and Y.shape[1] == 1:
        return np.eye(2)[Y[:, 0].astype(np.int64)]
    return Y


def schedule_for(spec: RunSpec, n_rows: int):
    """The spec's batch schedule over ``n_rows`` training rows; a schedule the spec's options
    cannot run (a 1-row batch under batch normalization) raises ``SpecError``."""
    schedule = make_schedule(
        n_rows, spec.batch_size, spec.epochs, spec.seed, spec.shuffle, spec.drop_last
    )
    if spec.batch_norm and min(len(s.rows) for s in schedule.steps) < 2:
        raise SpecError(
            f"batch_norm: a batch of this schedule has 1 row ({n_rows} rows in batches of "
            f"{spec.batch_size}), and batch normalization needs at least 2 (one row has no "
            "variance); choose another batch_size or set drop_last = true"
        )
    return schedule


def build_inputs(
    spec: RunSpec, data_dir: str | None = None, *, shapes_only: bool = False
) -> RunInputs:
    """Everything a run needs. ``shapes_only``: the network, optimizer, first weights and
    schedule without the data where its shape is known ahead (Occupancy: its five features
    and its training rows), so that what depends only on shapes (``contract``) needs no
    download; the splits are then empty."""
    check_memory(spec)
    if shapes_only and spec.dataset == "occupancy":
        splits, info = {}, {"name": "occupancy"}
        rows, n_features, n_outputs = EXPECTED_ROWS["train"], len(FEATURES), spec.n_outputs
    else:
        splits, info = load_splits(spec, data_dir)
        X, Y = splits["train"]
        rows, n_features, n_outputs = len(X), X.shape[1], Y.shape[1]
    mlp = spec.mlp(n_features=n_features, n_outputs=n_outputs)
    schedule = schedule_for(spec, rows)
    optimizer = _with_decay_length(spec.optimizer, len(schedule))
    params0 = init_params(mlp, spec.seed, spec.init, spec.dtype, spec.init_gain)
    for array in [*params0.values(), *(a for split in splits.values() for a in split)]:
        array.flags.writeable = False
    stop_if_signalled()  # loading the data is a boundary too (the Occupancy files take a while)
    return RunInputs(
        spec=spec,
        splits=splits,
        dataset=info,
        mlp=mlp,
        optimizer=optimizer,
        params0=params0,
        schedule=schedule,
    )


def _with_decay_length(optimizer: Optimizer, updates: int) -> Optimizer:
    """A cosine schedule's decay length filled in: ``lr_decay_steps = 0`` is the run's number
    of updates. One shorter than the run is refused: past it scratch and optax hold the rate
    at lr_min, PyTorch's CosineAnnealingLR would raise it again."""
    if optimizer.lr_schedule != "cosine":
        return optimizer
    if optimizer.lr_decay_steps == 0:
        if updates <= optimizer.lr_warmup:
            raise SpecError(
                f"lr_warmup: the run has {updates} update{'s' * (updates > 1)}, so a warm-up "
                f"of {optimizer.lr_warmup} leaves no cosine; make it shorter"
            )
        return dataclasses.replace(optimizer, lr_decay_steps=updates)
    if optimizer.lr_decay_steps < updates:
        raise SpecError(
            f"lr_decay_steps: {optimizer.lr_decay_steps} is shorter than the run's {updates} "
            "updates (past it PyTorch's cosine rises again while optax's stays at lr_min); "
            "give at least the run's length, or 0 for exactly it"
        )
    return optimizer


# --- will it fit? -------------------------------------------------------------------------

# How many copies of the parameters each engine makes the run hold at once: its own, the
# gradients, the update, the new parameters in its trace, and the oracle's loaded copies.
COPIES_PER_ENGINE = 6
ACTIVATION_COPIES = 3  # Z, A and dZ (or a temporary), per layer and row
DATA_COPIES = 4  # raw, standardized, cast to the dtype, and the engines' copies
STEP_BYTES = 4096  # per step: its schedule entry and the report's per-step records
# The key to change when each part is what does not fit, and how (where no one key is the
# cause: ``_culprit``).
ADVICE = {
    "parameters": ("hidden", "use fewer or narrower hidden layers"),
    "activations": ("hidden", "use narrower hidden layers or a smaller batch_size"),
    "data": ("synthetic_rows", "use fewer synthetic_rows or synthetic_features"),
    "schedule": ("epochs", "use fewer epochs or a larger batch_size"),
}
# The keys the estimate grows with, and what to do about each.
SCALING = {
    "hidden": "use fewer or narrower hidden layers",
    "synthetic_rows": "use fewer synthetic_rows",
    "synthetic_features": "use fewer synthetic_features",
    "synthetic_classes": "use fewer synthetic_classes",
    "batch_size": "use a smaller batch_size",
    "epochs": "use fewer epochs or a larger batch_size",
}


def memory_needed(spec: RunSpec) -> dict[str, int]:
    """Bytes a run of ``spec`` holds at its peak, roughly, by part (an upper estimate)."""
    if spec.dataset == "occupancy":
        features, rows = len(FEATURES), list(EXPECTED_ROWS.values())
    else:
        features, rows = spec.synthetic_features, [spec.synthetic_rows] * 2
    # the engine under test and the references
    itemsize, engines = np.dtype(spec.dtype).itemsize, 1 + len(spec.engines)
    sizes = (features, *spec.hidden, spec.n_outputs)
    n_params = sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(sizes))
    copies = 1 + len(OPTIMIZER_STATE[spec.optimizer.name]) + COPIES_PER_ENGINE * engines
    batch = min(spec.batch_size, rows[0])
    steps = spec.epochs * -(-rows[0] // spec.batch_size)
    return {
        "parameters": n_params * itemsize * copies,
        # every engine's batch at once (lockstep), or one engine's metrics on the largest split
        "activations": max(batch * engines, max(rows)) * sum(sizes) * itemsize * ACTIVATION_COPIES,
        "data": sum(rows) * (features + spec.n_outputs) * 8 * DATA_COPIES,
        "schedule": spec.epochs * rows[0] * 8 + steps * STEP_BYTES,
    }


def check_memory(spec: RunSpec, available: int | None = None) -> None:
    """Refuse, before allocating anything, a run that would not fit in the memory there is."""
    parts = memory_needed(spec)
    needed = sum(parts.values())
    available = available_memory() if available is None else available
    if available is None or needed <= available:
        return
    key, advice = _culprit(spec, needed) or ADVICE[max(parts, key=parts.__getitem__)]
    detail = ", ".join(f"{part} {_size(n)}" for part, n in parts.items())
    raise SpecError(
        f"{key}: this run needs about {_size(needed)} of memory ({detail}), and "
        f"{_size(available)} is available; {advice}"
    )


def _culprit(spec: RunSpec, needed: int) -> tuple[str, str] | None:
    """The key whose value makes the run too big: the one that, set back to its default,
    takes the most off the estimate (None where none of them takes anything off)."""
    default = RunSpec()
    relief = {}
    for key in SCALING:
        try:
            lighter = dataclasses.replace(spec, **{key: getattr(default, key)})
        except SpecError:  # its default does not go with the other keys
            continue
        relief[key] = needed - sum(memory_needed(lighter).values())
    best = max(relief, key=relief.__getitem__, default=None)
    return (best, SCALING[best]) if best is not None and relief[best] > 0 else None


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of the system's available memory
    (MemAvailable), the cgroup's limit less its usage, and the address-space limit; None
    where none of them can be read."""
    found = [_meminfo_available(), _cgroup_room(), _address_space_limit()]
    known = [n for n in found if n is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((root / "memory.current").read_text())
    except (OSError, ValueError):
        return None


def _address_space_limit() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def _size(n: int) -> str:
    for unit, scale in (
        ("EiB", 2**60),
        ("PiB", 2**50),
        ("TiB", 2**40),
        ("GiB", 2**30),
        ("MiB", 2**20),
    ):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{max(n, 1) / 2**10:.0f} KiB" if n >= 2**10 else f"{n} B"
