"""From a run spec to everything one run needs: data, network, first weights, batch schedule.

Every engine of a run is fed from one ``RunInputs``, so all of them see the same arrays, the
same initial parameters and the same mini-batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from comparisons.run.spec import RunSpec
from data import BatchSchedule, dataset_info, load_occupancy, make_schedule, make_synthetic
from data.standardize import standardize_splits
from scratch.config import MLP, Optimizer
from scratch.initializers import init_params

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RunInputs:
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


def build_inputs(spec: RunSpec, data_dir: str | None = None) -> RunInputs:
    splits, info = load_splits(spec, data_dir)
    X, Y = splits["train"]
    mlp = spec.mlp(n_features=X.shape[1], n_outputs=Y.shape[1])
    schedule = make_schedule(
        len(X), spec.batch_size, spec.epochs, spec.seed, spec.shuffle, spec.drop_last
    )
    return RunInputs(
        spec=spec,
        splits=splits,
        dataset=info,
        mlp=mlp,
        optimizer=spec.optimizer,
        params0=init_params(mlp, spec.seed, spec.init, spec.dtype, spec.init_gain),
        schedule=schedule,
    )
