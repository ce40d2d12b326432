"""Scratch's error terms and gradients against central finite differences, step by step.

Finite differences share no code with any framework: they differentiate scratch's own loss
numerically (``scratch/gradcheck.py``), so they judge whether scratch's backprop is consistent
with scratch's forward pass. float64 only.
"""

from __future__ import annotations

from collections.abc import Callable

from comparisons.oracle.compare import compare
from comparisons.oracle.divergence import Divergence
from comparisons.oracle.tolerances import FINITE_DIFFERENCES
from comparisons.run.engines import ScratchEngine, initial_state
from comparisons.run.inputs import RunInputs
from scratch.gradcheck import numerical_gradients
from scratch.network import forward_backward

FD = "finite differences"


def gradcheck(
    inputs: RunInputs, n_steps: int, on_step: Callable[[int], None] | None = None
) -> tuple[list[dict], Divergence | None]:
    """Per checked step, each tensor's max error relative to its scale; and the first
    divergence in (step, dataflow order), or None. Scratch trains on between the checks."""
    X, Y = inputs.train
    engine = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    engine.set_state(inputs.params0, initial_state(inputs.optimizer, inputs.params0))
    per_step, first = [], None
    for step in inputs.schedule.steps[:n_steps]:
        params = engine.params()
        Xb, Yb = X[step.rows], Y[step.rows]
        analytic = forward_backward(inputs.mlp, params, Xb, Yb)
        numeric = numerical_gradients(inputs.mlp, params, Xb, Yb)
        results = [
            compare(name, analytic[name], numeric[name], FD, FINITE_DIFFERENCES)
            for name in analytic
            if name in numeric
        ]
        per_step.append(
            {
                "step": step.index,
                "epoch": step.epoch,
                "max_rel": {c.tensor: c.max_rel for c in results},
            }
        )
        bad = [i for i, c in enumerate(results) if not c.ok]
        if bad and first is None:
            upstream = [c.tensor for c in results[: bad[0]]]
            first = Divergence(step.index, step.epoch, step.batch, results[bad[0]], upstream)
        engine.step(Xb, Yb)
        if on_step is not None:
            on_step(step.index)
    return per_step, first
