"""Drift: every engine trains freely from the same start, through the same batches.

The runner records, step by step, each engine's loss and how far each reference's parameters
move away from scratch's. Nothing is reloaded between steps, so rounding differences compound
(and grow faster in float32): the verdict compares final losses, not step-by-step tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from comparisons.oracle.tolerances import DRIFT
from comparisons.run.engines import Engine, ScratchEngine, initial_state
from comparisons.run.inputs import RunInputs


@dataclass
class DriftResult:
    engines: list[str]
    per_step: list[dict] = field(default_factory=list)
    final_params: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def drift(
    inputs: RunInputs,
    references: Mapping[str, Engine],
    *,
    on_step: Callable[[int], None] | None = None,
) -> DriftResult:
    """Train every engine freely from the same start; record each step's loss per engine and
    each reference's parameter drift: max over parameters of ‖θ_ref - θ_scratch‖∞ / ‖θ_scratch‖∞.
    """
    X, Y = inputs.train
    scratch = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    engines: dict[str, Engine] = {"scratch": scratch, **references}
    state0 = initial_state(inputs.optimizer, inputs.params0)
    for engine in engines.values():
        engine.set_state(inputs.params0, state0)
    result = DriftResult(engines=list(engines))
    names = list(inputs.params0)
    for step in inputs.schedule.steps:
        Xb, Yb = X[step.rows], Y[step.rows]
        traces = {name: engine.step(Xb, Yb) for name, engine in engines.items()}
        ours = traces["scratch"]
        result.per_step.append(
            {
                "step": step.index,
                "epoch": step.epoch,
                "loss": {name: float(t["loss"]) for name, t in traces.items()},
                "param_drift": {
                    name: max(_relative_gap(t[p], ours[p]) for p in names)
                    for name, t in traces.items()
                    if name != "scratch"
                },
            }
        )
        if on_step is not None:
            on_step(step.index)
    result.final_params = {name: engine.params() for name, engine in engines.items()}
    return result


def _relative_gap(theirs: np.ndarray, ours: np.ndarray) -> float:
    scale = float(np.max(np.abs(ours)))
    gap = float(np.max(np.abs(theirs.astype(np.float64) - ours)))
    return gap / scale if scale > 0 else gap


def drift_verdict(metrics: dict, dtype: str) -> dict:
    """Engines agree when every reference's final loss on every split is within the drift
    tolerance of scratch's; otherwise name the worst (engine, split)."""
    tol = DRIFT[dtype]
    worst = None
    for engine, splits in metrics.items():
        if engine == "scratch":
            continue
        for split, m in splits.items():
            ours = metrics["scratch"][split]["loss"]
            gap = abs(m["loss"] - ours) / abs(ours) if ours else abs(m["loss"])
            if not np.isfinite(gap):
                gap = float("inf")
            if worst is None or gap > worst["max_rel"]:
                worst = {"engine": engine, "split": split, "tensor": "final loss", "max_rel": gap}
    agree = worst is None or worst["max_rel"] <= tol.rtol
    if worst is not None:
        worst["allowed"] = tol.rtol
    return {"agree": agree, "worst": worst, "tolerance": vars(tol)}
