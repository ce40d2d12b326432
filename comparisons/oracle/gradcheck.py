"""Scratch's error terms and gradients against central finite differences, step by step.

Finite differences share no code with any framework: they differentiate scratch's own loss
numerically (``scratch/gradcheck.py``), so they judge whether scratch's backprop is consistent
with scratch's forward pass. float64 only.

Another engine under test (``run/contract.py``) is judged the same way through its contract:
its gradients ``dW``, ``db`` against central differences of the loss its own ``step`` reports
(the error terms ``dZ`` need the forward pass cut open, which only scratch allows).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from comparisons.oracle.compare import compare, mismatch
from comparisons.oracle.divergence import Diverged, Divergence
from comparisons.oracle.tolerances import FINITE_DIFFERENCES, FINITE_DIFFERENCES_FLOOR
from comparisons.run.contract import as_arrays
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest
from scratch.gradcheck import central_difference, numerical_gradients
from scratch.network import forward, forward_backward
from scratch.trace_schema import describe, trace_names

FD = "finite differences"


def gradcheck(
    inputs: RunInputs,
    n_steps: int,
    on_step: Callable[[int], None] | None = None,
    under_test: UnderTest = SCRATCH,
) -> tuple[list[dict], Divergence | None, Diverged | None]:
    """Per checked step, each tensor's max error relative to its scale; the first divergence
    in (step, dataflow order), or None; and, where backprop and finite differences turn
    non-finite together, the diverged finding (no NaN is a max error of 0). Scratch trains on
    between the checks."""
    X, Y = inputs.train
    engine = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    engine.set_state(inputs.start(), initial_state(inputs.optimizer, inputs.params0))
    probe = None
    if not under_test.is_scratch:  # a second engine, whose losses are differentiated
        probe = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    order = trace_names(inputs.mlp.n_layers, inputs.optimizer.name)
    per_step = []
    for step in inputs.schedule.steps[:n_steps]:
        params, state = engine.state()
        params = {k: np.array(v) for k, v in as_arrays(params, "state()").items()}
        Xb, Yb = X[step.rows], Y[step.rows]
        rows = judged_rows(inputs.mlp, params, Xb)
        entry = {"step": step.index, "epoch": step.epoch, "rows": int(rows.sum()), "max_rel": {}}
        per_step.append(entry)
        if not rows.any():
            entry["skipped"] = FLOORED
        else:
            with np.errstate(all="ignore"):  # a non-finite value is judged, not warned about
                if probe is None:
                    analytic = forward_backward(inputs.mlp, params, Xb[rows], Yb[rows])
                    numeric = numerical_gradients(inputs.mlp, params, Xb[rows], Yb[rows])
                else:
                    probe.set_state(params, state)
                    analytic = as_arrays(probe.step(Xb[rows], Yb[rows]), "step()")
                    numeric = engine_gradients(probe, params, state, Xb[rows], Yb[rows])
            loss = float(analytic["loss"]) if "loss" in analytic else float("nan")
            results = [
                compare(name, analytic[name], numeric[name], FD, fd_allowed(numeric[name], loss))
                if name in analytic
                else mismatch(name, FD, "not provided by the engine under test")
                for name in order
                if name in numeric
            ]
            entry["max_rel"] = {c.tensor: c.max_rel for c in results}
        bad = [] if not rows.any() else [i for i, c in enumerate(results) if not c.ok]
        if bad:
            c, upstream = results[bad[0]], [c.tensor for c in results[: bad[0]]]
            if c.nonfinite == "both":
                diverged = Diverged(
                    step.index,
                    step.epoch,
                    step.batch,
                    c.tensor,
                    ["scratch", FD],
                    c.scratch_value,
                    c.index,
                    upstream,
                )
                return per_step, None, diverged
            described = describe(c.tensor, inputs.mlp, inputs.optimizer)
            look_at = described.producer
            if probe is not None:
                look_at = f"{under_test.name}: where it computes {described.equation}"
            first = Divergence(step.index, step.epoch, step.batch, c, upstream, look_at)
            return per_step, first, None
        with np.errstate(all="ignore"):
            engine.step(Xb, Yb)
        if on_step is not None:
            on_step(step.index)
    return per_step, None, None


def engine_gradients(
    engine, params: dict, state: dict, X: np.ndarray, Y: np.ndarray, h: float = 1e-6
) -> dict[str, np.ndarray]:
    """Central differences of the loss an engine's ``step`` reports, for every parameter:
    ``dW``, ``db`` under the trace's names. The engine is reloaded before every step, so the
    update each step makes never leaks into the next evaluation."""
    work = {p: np.array(v, np.float64) for p, v in params.items()}

    def loss() -> float:
        engine.set_state(work, state)
        return float(engine.step(X, Y)["loss"])

    return {f"d{p}": central_difference(loss, work[p], h) for p in work}


def fd_allowed(numeric: np.ndarray, loss: float) -> np.ndarray:
    """How far backprop may be from a central difference: rtol·|fd| + atol·max|fd|, and never
    less than what a central difference can resolve at this loss."""
    tol = FINITE_DIFFERENCES
    abs_fd = np.abs(np.asarray(numeric, np.float64))
    floor = FINITE_DIFFERENCES_FLOOR * abs(loss) if np.isfinite(loss) else 0.0
    return tol.rtol * abs_fd + tol.atol * float(abs_fd.max(initial=0.0)) + floor


FLOORED = (
    "every row is where BCE's gradient is floored (A(1 - A) < 1e-12, PyTorch's convention, "
    "which scratch follows): there it is not the loss's derivative, so finite differences "
    "cannot judge it"
)


def judged_rows(mlp, params: dict, X: np.ndarray) -> np.ndarray:
    """The rows of a batch finite differences can judge: all, except, for a BCE loss on
    probabilities, the rows whose output is so saturated (A(1 - A) < 1e-12) that the
    gradient follows PyTorch's floor instead of the derivative of the loss."""
    if mlp.loss != "bce":
        return np.ones(X.shape[0], dtype=bool)
    with np.errstate(all="ignore"):
        A = forward(mlp, params, X)[f"A{mlp.n_layers}"]
    return np.all(A * (1.0 - A) >= 1e-12, axis=1)
