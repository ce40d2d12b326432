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

from comparisons.oracle.adapters import NOT_PROVIDED, look_at_tensor
from comparisons.oracle.compare import compare, mismatch
from comparisons.oracle.divergence import Diverged, Divergence, EngineFailure, engine_failure
from comparisons.oracle.tolerances import FINITE_DIFFERENCES, FINITE_DIFFERENCES_FLOOR
from comparisons.run.contract import ContractError, as_arrays, load_state, read_state
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest
from scratch.gradcheck import central_difference, numerical_gradients
from scratch.network import forward, forward_backward
from scratch.trace_schema import names_of

FD = "finite differences"


def gradcheck(
    inputs: RunInputs,
    n_steps: int,
    on_step: Callable[[int], None] | None = None,
    under_test: UnderTest = SCRATCH,
) -> tuple[list[dict], Divergence | None, Diverged | None, EngineFailure | None]:
    """Per checked step, each tensor's max error relative to its scale; the first divergence
    in (step, dataflow order), or None; where backprop and finite differences turn
    non-finite together, the diverged finding (no NaN is a max error of 0); and where the
    engine raised, its failure. The engine trains on between the checks."""
    per_step: list[dict] = []
    step = inputs.schedule.steps[0]
    try:
        return _gradcheck(inputs, n_steps, on_step, under_test, per_step)
    except ContractError:
        raise
    except _Raised as raised:  # the engine's bug: a verdict, never a crash
        name, package = under_test.name, under_test.package
        failure, _ = engine_failure(name, package, raised.step, raised.error)
        return per_step, None, None, failure
    except Exception as error:  # scratch's own, raised outside a step of the loop
        failure, _ = engine_failure(under_test.name, under_test.package, step, error)
        return per_step, None, None, failure


class _Raised(Exception):
    def __init__(self, step, error):
        super().__init__(str(error))
        self.step, self.error = step, error


def _call(step, function, *args, **kwargs):
    """``function(*args, **kwargs)``, a call into the engine: its exception is the engine's
    failure at ``step`` (a verdict), a broken contract bad input."""
    try:
        return function(*args, **kwargs)
    except ContractError:
        raise
    except Exception as error:
        raise _Raised(step, error) from error


def _gradcheck(inputs, n_steps, on_step, under_test, per_step):
    X, Y = inputs.train
    settings = inputs.mlp, inputs.optimizer, inputs.spec.dtype
    where = f"--engine {under_test.spec}"
    ours = under_test.name
    engine = under_test.make(*settings)
    load_state(engine, inputs.start(), initial_state(inputs.optimizer, inputs.params0), where)
    probe = None
    if not under_test.is_scratch:  # a second engine, whose losses are differentiated
        probe = under_test.make(*settings)
    order = names_of(inputs.mlp, inputs.optimizer)
    for step in inputs.schedule.steps[:n_steps]:
        if probe is None:
            params, state = engine.state()
        else:
            params, state = read_state(engine, inputs.mlp, inputs.optimizer, where)
        params = {k: np.array(v) for k, v in params.items()}
        Xb, Yb = X[step.rows], Y[step.rows]
        given = inputs.step_keywords(step)  # the step's dropout masks, held fixed
        rows = judged_batch(inputs.mlp, params, Xb, given.get("masks"))
        kept = {k: {n: m[rows] for n, m in v.items()} for k, v in given.items()}  # their rows
        entry = {"step": step.index, "epoch": step.epoch, "rows": int(rows.sum()), "max_rel": {}}
        per_step.append(entry)
        if not rows.any():
            entry["skipped"] = FLOORED
        else:
            with np.errstate(all="ignore"):  # a non-finite value is judged, not warned about
                if probe is None:
                    masks = kept.get("masks")
                    analytic = forward_backward(inputs.mlp, params, Xb[rows], Yb[rows], masks)
                    numeric = numerical_gradients(
                        inputs.mlp, params, Xb[rows], Yb[rows], masks=masks
                    )
                else:
                    load_state(probe, params, state, where)
                    analytic = _call(step, probe.step, Xb[rows], Yb[rows], **kept)
                    # a copy: the probe steps again for every difference, and may reuse buffers
                    analytic = as_arrays(analytic, f"{where}: step()", copy=True)
                    batch = probe, params, state, Xb[rows], Yb[rows], where
                    numeric = _call(step, engine_gradients, *batch, given=kept)
            loss = float(analytic["loss"]) if "loss" in analytic else float("nan")
            results = [
                compare(
                    name,
                    analytic[name],
                    numeric[name],
                    FD,
                    fd_allowed(numeric[name], loss),
                    under_test=ours,
                )
                if name in analytic
                else mismatch(name, FD, NOT_PROVIDED, ours)
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
                    [ours, FD],
                    c.under_test_value,
                    c.index,
                    upstream,
                )
                return per_step, None, diverged, None
            look_at = look_at_tensor(inputs, under_test, c.tensor)
            first = Divergence(step.index, step.epoch, step.batch, c, upstream, look_at)
            return per_step, first, None, None
        with np.errstate(all="ignore"):
            _call(step, engine.step, Xb, Yb, **given)
        if on_step is not None:
            on_step(step.index)
    return per_step, None, None, None


def engine_gradients(
    engine,
    params: dict,
    state: dict,
    X: np.ndarray,
    Y: np.ndarray,
    where: str = "the engine",
    h: float = 1e-6,
    given: dict | None = None,
) -> dict[str, np.ndarray]:
    """Central differences of the loss an engine's ``step`` reports, for every parameter:
    ``dW``, ``db`` under the trace's names. The engine is reloaded before every step, so the
    update each step makes never leaks into the next evaluation; ``given``: what each step
    is given besides X and Y (the dropout masks, held fixed)."""
    work = {p: np.array(v, np.float64) for p, v in params.items()}

    def loss() -> float:
        load_state(engine, work, state, where)
        trace = as_arrays(engine.step(X, Y, **(given or {})), f"{where}: step()")
        value = trace.get("loss")
        if value is None or value.size != 1 or value.dtype.kind != "f":
            found = "missing" if value is None else f"shaped {value.shape}, {value.dtype}"
            raise ContractError(
                f"{where}: step()'s loss is {found}, not one number: finite differences "
                "differentiate it"
            )
        return float(value.reshape(-1)[0])

    return {f"d{p}": central_difference(loss, work[p], h) for p in work}


def fd_allowed(numeric: np.ndarray, loss: float) -> np.ndarray:
    """How far backprop may be from a central difference: rtol·|fd| + atol·max|fd|, and never
    less than what a central difference can resolve at this loss."""
    tol = FINITE_DIFFERENCES
    abs_fd = np.abs(np.asarray(numeric, np.float64))
    floor = FINITE_DIFFERENCES_FLOOR * abs(loss) if np.isfinite(loss) else 0.0
    return tol.rtol * abs_fd + tol.atol * float(abs_fd.max(initial=0.0)) + floor


FLOORED = (
    "every row is where the loss is not differentiable within reach of a central difference "
    "(a ReLU kink next to a pre-activation, or BCE's floored gradient, A(1 - A) < 1e-12, "
    "PyTorch's convention, which scratch follows): finite differences cannot judge it"
)
# Central differences step θ by h = 1e-6, which moves a pre-activation by about that much; a
# row with a ReLU or leaky ReLU unit this close to its kink could straddle it, and then the
# difference averages the slopes of both sides (half the slope of a ReLU at exactly 0, where
# backprop takes one side). Such rows happen where a row's inputs to a layer are all zero:
# the pre-activation is then the bias, 0 at the start (a row whose units dropout dropped).
KINK_MARGIN = 1e-4
KINKED = ("relu", "leaky_relu")


def judged_rows(mlp, params: dict, X: np.ndarray, masks: dict | None = None) -> np.ndarray:
    """The rows of a batch finite differences can judge: all, except the rows that have a
    ReLU or leaky ReLU unit within ``KINK_MARGIN`` of its kink and, for a BCE loss on
    probabilities, the rows whose output is so saturated (A(1 - A) < 1e-12) that the
    gradient follows PyTorch's floor instead of the derivative of the loss. ``masks``: the
    step's dropout masks."""
    with np.errstate(all="ignore"):
        fwd = forward(mlp, params, X, masks)
    judged = np.ones(X.shape[0], dtype=bool)
    for l in range(1, mlp.n_layers + 1):
        if mlp.activation_of(l) in KINKED:  # its input: Z_l, or N_l where batch-normalized
            into = fwd.get(f"N{l}", fwd[f"Z{l}"])
            judged &= np.all(np.abs(into) > KINK_MARGIN, axis=1)
    if mlp.loss == "bce":
        A = fwd[f"A{mlp.n_layers}"]
        with np.errstate(all="ignore"):
            judged &= np.all(A * (1.0 - A) >= 1e-12, axis=1)
    return judged


def judged_batch(mlp, params: dict, X: np.ndarray, masks: dict | None = None) -> np.ndarray:
    """The rows gradcheck differentiates: ``judged_rows``, applied again to the rows it
    keeps until it keeps them all. With batch normalization the kept rows are a batch of
    their own, with their own statistics, and a row that was clear of a kink in the whole
    batch can land on it in the smaller one (check found one: a row whose every unit was
    then at or below 0 before dropout's mask, its next layer's Z exactly the bias)."""
    rows = judged_rows(mlp, params, X, masks)
    while mlp.batch_norm and rows.any() and not rows.all():
        kept = np.flatnonzero(rows)
        sub = {name: mask[kept] for name, mask in masks.items()} if masks else None
        again = judged_rows(mlp, params, X[kept], sub)
        if again.all():
            break
        rows[kept[~again]] = False
    return rows


def judged_part(mlp, tensor: str, rows: np.ndarray) -> np.ndarray | slice | None:
    """What of ``tensor`` finite differences of the whole batch's loss may judge, given the
    batch's ``rows`` that ``judged_rows`` keeps: all of it (``slice(None)``) when every row
    is kept; else, for an error term whose rows do not mix (dZ of the output layer, or of
    any layer without batch normalization: row i's entries are the derivative of row i's
    terms of the loss alone), the kept rows (if any); else nothing (None): a parameter's gradient
    sums over every row, and batch normalization mixes them, so a left-out row is in all of
    it. gradcheck steps on the kept rows alone; the arbitration, which judges the whole
    batch's tensors, compares only this part."""
    if rows.all():
        return slice(None)
    layer = tensor.removeprefix("dZ")
    if tensor.startswith("dZ") and layer.isdigit():
        if (not mlp.batch_norm or int(layer) == mlp.n_layers) and rows.any():
            return rows
    return None
