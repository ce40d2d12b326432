"""The lockstep oracle: every engine, every step, every tensor.

Before each step every reference is loaded with scratch's parameters and optimizer state,
so each step's differences are that step's alone and do not compound; after it, every
tensor of the trace is compared in dataflow order. A disagreement beyond tolerance is a bug
or an unmatched convention, and the first one in (step, dataflow order) points at the
faulty equation.

The run keeps per-step summaries only, never every tensor of every step, so memory does not
grow with the tensors' size times the number of steps. The first step's traces are kept
whole, for the report's equation walkthrough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

import scratch.training
from comparisons.oracle.compare import Comparison, compare, compare_traces, mismatch
from comparisons.oracle.divergence import Divergence, DivergentStep
from comparisons.run.engines import Engine, ScratchEngine, initial_state
from comparisons.run.inputs import RunInputs
from data.schedule import Step
from scratch.trace_schema import batch_names


@dataclass
class WorstSeen:
    """The largest error seen for one (engine, tensor) pair over the whole run."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    ratio: float = 0.0
    step: int = -1
    ok: bool = True

    def update(self, c: Comparison, step: int) -> None:
        if c.ratio > self.ratio or self.step < 0:
            self.ratio, self.step = c.ratio, step
        self.max_abs = max(self.max_abs, c.max_abs)
        self.max_rel = max(self.max_rel, c.max_rel)
        self.ok = self.ok and c.ok


@dataclass
class LockstepResult:
    engines: list[str]
    steps_run: int = 0
    first_divergence: Divergence | None = None
    divergent_step: DivergentStep | None = None
    divergent_steps: int = 0
    per_tensor: dict[str, dict[str, WorstSeen]] = field(default_factory=dict)  # engine -> tensor
    per_step: list[dict] = field(default_factory=list)
    first_step_traces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    final_params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        return self.first_divergence is None


def lockstep(
    inputs: RunInputs,
    references: Mapping[str, Engine],
    *,
    stop_at_first: bool = False,
    steps: list[Step] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> LockstepResult:
    """Step scratch and every reference through the schedule, comparing each step's trace.

    ``stop_at_first`` ends the run at the first divergent step (the quick answer a person
    changing scratch wants); otherwise the run goes on and counts the divergent steps.
    """
    X, Y = inputs.train
    scratch = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    scratch.set_state(inputs.params0, initial_state(inputs.optimizer, inputs.params0))
    result = LockstepResult(engines=["scratch", *references])
    result.per_tensor = {name: {} for name in references}
    for step in inputs.schedule.steps if steps is None else steps:
        params, state = scratch.state()
        Xb, Yb = X[step.rows], Y[step.rows]  # what the references are fed
        # Scratch batches the data itself, so a fault in its batching is caught here too.
        batch_checks, scratch_batch = scratch_batching(inputs, step, X, Y)
        scratch_trace = {} if scratch_batch is None else scratch.step(*scratch_batch)
        summary = {"step": step.index, "epoch": step.epoch, "loss": {}, "worst_rel": {}}
        summary["loss"]["scratch"] = float(scratch_trace.get("loss", float("nan")))
        failures: list[tuple[int, Comparison]] = []
        traces = {"scratch": scratch_trace}
        for name, engine in references.items():
            engine.set_state(params, state)
            trace = traces[name] = engine.step(Xb, Yb)
            summary["loss"][name] = float(trace["loss"]) if "loss" in trace else float("nan")
            worst_by_kind: dict[str, float] = {}
            checks = [
                *batch_checks,
                *(compare_traces(scratch_trace, trace, name, params) if scratch_trace else []),
            ]
            for position, c in enumerate(checks):
                result.per_tensor[name].setdefault(c.tensor, WorstSeen()).update(c, step.index)
                worst_by_kind[c.kind] = max(worst_by_kind.get(c.kind, 0.0), c.max_rel)
                if not c.ok:
                    failures.append((position, c))
            summary["worst_rel"][name] = worst_by_kind
            if step.index == 0:
                result.first_step_traces[name] = trace
        if step.index == 0:
            result.first_step_traces["scratch"] = scratch_trace
        result.per_step.append(summary)
        result.steps_run += 1
        if on_step is not None:
            on_step(step.index)
        if failures:
            result.divergent_steps += 1
            if result.first_divergence is None:
                position, first = min(failures, key=lambda f: f[0])
                names = [*batch_names(), *scratch_trace]
                result.first_divergence = Divergence(
                    step.index, step.epoch, step.batch, first, names[:position]
                )
                result.divergent_step = DivergentStep(params, state, Xb, Yb, traces)
            if stop_at_first:
                break
    result.final_params = scratch.params()
    return result


def scratch_batching(
    inputs: RunInputs, step: Step, X: np.ndarray, Y: np.ndarray
) -> tuple[list[Comparison], tuple[np.ndarray, np.ndarray] | None]:
    """Scratch's own batching of this step against the schedule's: the exact checks "rows",
    "X" and "Y", and the batch scratch trains on (None when scratch has no such batch)."""
    schedule = inputs.schedule
    # Looked up on the module at each call, so that a fault patched into scratch shows here.
    batches = scratch.training.epoch_batches(
        schedule.orders[step.epoch], schedule.batch_size, schedule.drop_last
    )
    if step.batch >= len(batches):
        missing = mismatch(
            "rows",
            "schedule",
            f"scratch made {len(batches)} batches in epoch {step.epoch}; the schedule has "
            f"{schedule.steps_per_epoch} (this is batch {step.batch})",
        )
        return [missing], None
    rows = batches[step.batch]
    Xs, Ys = scratch.training.minibatch(X, Y, rows)
    checks = [
        compare("rows", np.asarray(rows), step.rows, "schedule"),
        compare("X", Xs, X[step.rows], "schedule"),
        compare("Y", Ys, Y[step.rows], "schedule"),
    ]
    return checks, (Xs, Ys) if checks[0].ok else None
