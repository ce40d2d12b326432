"""Train the scratch model alone and report each epoch's mean loss and accuracy per split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from comparisons.run.inputs import RunInputs
from scratch.trace_schema import running_names
from scratch.training import accuracy, train


@dataclass(frozen=True)
class EpochSummary:
    epoch: int  # 1-based, for people
    mean_loss: float  # mean of the epoch's per-step losses
    accuracy: dict[str, float]  # split -> accuracy with the parameters at the epoch's end


def train_scratch(inputs: RunInputs) -> Iterator[EpochSummary]:
    """Run the whole schedule with the scratch engine, one summary per epoch."""
    X, Y = inputs.train
    steps = inputs.schedule.steps
    batches = (s.rows for s in steps)  # dropout's masks from the run's seed, as in lockstep
    traces = train(inputs.mlp, inputs.optimizer, inputs.start(), X, Y, batches, inputs.spec.seed)
    losses: list[float] = []
    for step, trace in zip(steps, traces, strict=True):
        losses.append(float(trace["loss"]))
        if step.index + 1 == len(steps) or steps[step.index + 1].epoch != step.epoch:
            params = {p: trace[p] for p in inputs.params0}
            running = {
                n: trace[n] for n in running_names(inputs.mlp.n_layers, inputs.mlp.batch_norm)
            }
            yield EpochSummary(
                epoch=step.epoch + 1,
                mean_loss=float(np.mean(losses)),
                accuracy={
                    name: accuracy(inputs.mlp, params, Xs, Ys, running)
                    for name, (Xs, Ys) in inputs.splits.items()
                },
            )
            losses = []
