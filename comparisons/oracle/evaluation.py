"""The final evaluation judged: every split's outputs, loss and accuracy of the engine under
test against every reference's, each engine loaded with the engine under test's final state.

Evaluation is a computation of its own (no dropout; batch normalization with the running
statistics, not the batch's), so the training steps agreeing says nothing about it. As in a
lockstep step, every reference starts from what the engine under test holds, so only the
evaluation itself can differ. Per split, in order:

    outputs   A_L of every row, within the tolerance table's allowance (``FALLBACK``: the
              roundoff analysis covers the training step, not this forward pass)
    loss      scratch's loss of each engine's outputs (the task's definition), allowed what
              the outputs' allowance can move it: Σ |∂loss/∂A_L|·allowed, twice, plus the
              table's allowance of the loss itself
    accuracy  the fraction of rows classified right, allowed only the rows whose class
              differs between the two engines while their outputs agree within allowance (a
              tie at the decision boundary, broken by roundoff)

The comparisons are named ``<what> (<split>, evaluation)``: ``A3 (test, evaluation)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from comparisons.oracle.compare import EVALUATION_KIND, Comparison, compare, mismatch, quiet
from comparisons.oracle.divergence import Divergence, EngineFailure, engine_failure
from comparisons.oracle.lockstep import LockstepResult
from comparisons.oracle.tolerances import FALLBACK, Tolerance
from comparisons.run.contract import ContractError, as_arrays, load_state
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import UnderTest
from scratch.network import loss_and_output_grad
from scratch.training import accuracy_of, classify

LOOK_AT = "predict: evaluation (no dropout; batch normalization with the running statistics)"


def name_of(what: str, split: str) -> str:
    """An evaluation comparison's name: ``A3 (test, evaluation)``."""
    return f"{what} ({split}, {EVALUATION_KIND})"


@dataclass
class Evaluation:
    """The evaluation's comparisons, per reference in order, and the engine's failure."""

    comparisons: list[Comparison] = field(default_factory=list)
    failure: EngineFailure | None = None
    outputs: dict = field(default_factory=dict)  # every reference's, by split

    @property
    def first(self) -> Comparison | None:
        return next((c for c in self.comparisons if not c.ok), None)

    def names(self) -> list[str]:
        return list(dict.fromkeys(c.tensor for c in self.comparisons))


def outputs_of(engine, params: dict, state: dict, splits: Mapping) -> dict[str, np.ndarray]:
    """``engine``'s outputs on every split after loading it with (``params``, ``state``); an
    engine with ``outputs_from`` gives them itself (a worker computes them in its process, a
    recorded reference gives the recorded ones)."""
    own = getattr(engine, "outputs_from", None)
    if own is not None:
        return own(params, state, {split: X for split, (X, _) in splits.items()})
    return outputs_from(engine, params, state, {split: X for split, (X, _) in splits.items()})


def outputs_from(engine, params: dict, state: dict, splits: Mapping) -> dict[str, np.ndarray]:
    """``engine`` loaded with (``params``, ``state``), and its outputs on every split's X."""
    engine.set_state(params, state)
    return {split: np.asarray(engine.predict(X)) for split, X in splits.items()}


def add_evaluation(result: LockstepResult, evaluation: Evaluation, inputs: RunInputs) -> None:
    """The evaluation into a lockstep run's result: its comparisons into the worst errors per
    tensor, its failure, and its first failed comparison as the run's first divergence where
    every step agreed."""
    step = inputs.schedule.steps[-1]
    for name, table in result.per_tensor.items():
        mine = [c for c in evaluation.comparisons if c.engine == name]
        if mine:
            columns = np.array([[c.ratio, c.max_abs, c.max_rel] for c in mine]).T
            table.update(tuple(c.tensor for c in mine), *columns, step.index)
    if evaluation.failure is not None:
        result.failure = result.failure or evaluation.failure
    elif evaluation.first is not None and result.first_divergence is None:
        first = evaluation.first
        names = [c.tensor for c in evaluation.comparisons if c.engine == first.engine]
        agreed = names[: names.index(first.tensor)]
        result.first_divergence = as_divergence(inputs, evaluation, agreed)


def judge_evaluation(
    inputs: RunInputs,
    under_test: UnderTest,
    params: dict,
    state: dict,
    references: Mapping,
) -> Evaluation:
    """The engine under test and every reference evaluated from (``params``, ``state``), the
    engine under test's final state (what of the optimizer's state is not given starts at
    zero: evaluation reads none of it), and compared split by split."""
    state = {**initial_state(inputs.optimizer, params), **state}
    engine = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    load_state(engine, params, state, f"--engine {under_test.spec}")
    step = inputs.schedule.steps[-1]
    try:
        with np.errstate(all="ignore"):
            ours = {s: np.asarray(engine.predict(X)) for s, (X, _) in inputs.splits.items()}
    except ContractError:
        raise
    except Exception as error:  # a bug of the engine's: a verdict, never a crash
        failure, _ = engine_failure(under_test.name, under_test.package, step, error)
        failure.message = f"predict, on the final parameters: {failure.message}"
        return Evaluation(failure=failure)
    result = Evaluation()
    for name, reference in references.items():
        with np.errstate(all="ignore"):
            theirs = result.outputs[name] = outputs_of(reference, params, state, inputs.splits)
        for split, (_, Y) in inputs.splits.items():
            result.comparisons += compare_split(inputs, split, ours[split], theirs[split], Y, name)
    return result


@quiet
def compare_split(inputs, split, ours, theirs, Y, engine: str) -> list[Comparison]:
    """One split's outputs, loss and accuracy, one engine against another."""
    mlp, L = inputs.mlp, inputs.mlp.n_layers
    tol = FALLBACK[np.dtype(inputs.spec.dtype).name]
    outputs = name_of(f"A{L}", split)
    shape = (len(Y), mlp.sizes[-1])
    a, b = as_arrays({"a": ours, "b": theirs}, f"predict on {split}").values()
    if a.shape != shape:
        return [mismatch(outputs, engine, f"predict() gave shape {a.shape}, not {shape}")]
    if a.dtype != b.dtype:
        return [mismatch(outputs, engine, f"predict() gave dtype {a.dtype}, not {b.dtype}")]
    found = [compare(outputs, a, b, engine, tol=tol)]
    allowed = tol.rtol * np.abs(b) + tol.atol * float(np.abs(b).max(initial=0.0))
    with np.errstate(all="ignore"):
        (loss_a, _), (loss_b, grad) = (loss_and_output_grad(mlp, x, Y) for x in (a, b))
        moved = 2.0 * float(np.sum(np.abs(np.asarray(grad, np.float64)) * allowed))
        own = Tolerance(tol.rtol, 0.0, tol.reason)
        loss_allowed = moved + own.rtol * abs(float(loss_b))
        found.append(compare(name_of("loss", split), loss_a, loss_b, engine, loss_allowed))
        near = np.all(np.abs(a - b) <= allowed, axis=1)
        flips = (classify(mlp, a) != classify(mlp, b)) & near
        acc_a, acc_b = accuracy_of(mlp, a, Y), accuracy_of(mlp, b, Y)
    found.append(
        compare(
            name_of("accuracy", split),
            np.float64(acc_a),
            np.float64(acc_b),
            engine,
            float(np.mean(flips)) if len(flips) else 0.0,
        )
    )
    return found


def arbitrate_evaluation(inputs: RunInputs, evaluation: Evaluation, under_test: str) -> dict:
    """Who is wrong at the evaluation's first failed comparison: the engine under test where
    every two references agree there with each other (and there are two); else undecided."""
    c = evaluation.first
    assert c is not None
    split = c.tensor.rpartition("(")[2].partition(",")[0]
    agreements = {}
    for (a, A), (b, B) in _pairs(evaluation.outputs):
        _, Y = inputs.splits[split]
        found = compare_split(inputs, split, A[split], B[split], Y, b)
        agreements[f"{a} vs {b}"] = all(x.ok for x in found if x.tensor == c.tensor)
    if agreements and all(agreements.values()):
        wrong = under_test
        why = (
            f"{under_test} is wrong: its {c.tensor} differs from every reference's, and the "
            f"references agree with each other there ({LOOK_AT})"
        )
    else:
        wrong = "undecided"
        why = (
            f"undecided: {under_test}'s {c.tensor} differs from {c.engine}'s, and no second "
            "reference agrees with either (run with two references to decide)"
            if not agreements
            else f"undecided: the references disagree with each other on {c.tensor}"
        )
    return {"wrong": wrong, "explanation": why, "tensor": c.tensor, "agreements": agreements}


def _pairs(outputs: dict):
    items = list(outputs.items())
    return [(items[i], items[j]) for i in range(len(items)) for j in range(i + 1, len(items))]


def as_divergence(inputs: RunInputs, evaluation: Evaluation, agreed: list[str]) -> Divergence:
    """The evaluation's first failed comparison as the run's first divergence: after the last
    step (everything upstream of it, ``agreed``, agreed)."""
    step = inputs.schedule.steps[-1]
    c = evaluation.first
    assert c is not None
    return Divergence(step.index, step.epoch, step.batch, c, agreed, LOOK_AT)
