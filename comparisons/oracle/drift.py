"""Drift: every engine trains freely from the same start, through the same batches.

Scratch runs its own training loop, ``scratch.training.train``, unchanged: what users and the
``train`` command run. Each reference runs its own free loop. Nothing is reloaded between
steps, so rounding differences compound (and grow faster in float32): every step's loss and
parameters are judged against a drift allowance, and the final losses on every split too.

Non-finite values follow the oracle's rule: never agreement. When every engine's loss turns
non-finite at the same step the run is diverged; when only some do, they disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

import scratch.training
from comparisons.oracle.divergence import EngineFailure, engine_failure, package_of
from comparisons.oracle.tolerances import DRIFT
from comparisons.oracle.verdict import decide
from comparisons.run.contract import ContractError, Engine, as_arrays, load_state
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, SCRATCH_NAME, UnderTest
from scratch.trace_schema import running_names
from scratch.training import NonFiniteLossError


@dataclass
class DriftResult:
    engines: list[str]
    per_step: list[dict] = field(default_factory=list)
    final_params: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    final_state: dict[str, np.ndarray] = field(default_factory=dict)  # scratch's running stats
    first_divergence: dict | None = None  # the first step beyond the drift allowance
    diverged: dict | None = None  # every engine's loss non-finite at the same step
    failure: EngineFailure | None = None  # an engine raised


def drift(
    inputs: RunInputs,
    references: Mapping[str, Engine],
    *,
    on_step: Callable[[int], None] | None = None,
    under_test: UnderTest = SCRATCH,
) -> DriftResult:
    """Train every engine freely from the same start; record each step's loss per engine and
    each reference's parameter drift, max over parameters of ‖θ_ref - θ‖∞ / ‖θ‖∞ (θ the engine
    under test's), and stop at the first step beyond the allowance or non-finite. The results
    name the engine under test by its name."""
    X, Y = inputs.train
    tol = DRIFT[inputs.spec.dtype]
    state0 = initial_state(inputs.optimizer, inputs.params0)
    for engine in references.values():
        engine.set_state(inputs.params0, state0)
    steps = inputs.schedule.steps
    if under_test.is_scratch:
        # Looked up on the module, so that a fault patched into scratch's loop shows here.
        ours = scratch.training.train(
            inputs.mlp,
            inputs.optimizer,
            inputs.start(),
            X,
            Y,
            (s.rows for s in steps),
            inputs.spec.seed,  # scratch draws its own dropout masks
        )
    else:  # made here, not in the loop's generator: a broken factory is bad input
        engine = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
        load_state(engine, inputs.start(), state0, f"--engine {under_test.spec}")
        ours = _free_loop(engine, under_test.spec, inputs)
    name = under_test.name
    result = DriftResult(engines=[name, *references])
    params = dict(inputs.params0)
    running = running_names(inputs.mlp.n_layers, inputs.mlp.batch_norm)
    loss_scale = None
    for step in steps:
        try:
            with np.errstate(all="ignore"):  # a non-finite value is judged, not warned about
                engine = name
                trace, nonfinite = _next(ours, step.index)
                traces = {}
                for engine, reference in references.items():
                    keywords = inputs.step_keywords(step)
                    traces[engine] = reference.step(X[step.rows], Y[step.rows], **keywords)
        except ContractError:
            raise
        except _Unusable as unusable:
            result.first_divergence = {
                "step": step.index,
                "epoch": step.epoch,
                "engine": name,
                "tensor": unusable.tensor,
                "max_rel": math.inf,
                "allowed": tol.rtol,
                "problem": unusable.problem,
            }
            break
        except Exception as error:  # an engine's bug is a verdict, not a crash
            package = under_test.package if engine == name else package_of(references[engine])
            result.failure, _ = engine_failure(engine, package, step, error)
            break
        losses = {name: math.nan if nonfinite else float(trace["loss"])}
        losses.update({n: float(t["loss"]) for n, t in traces.items()})
        if not nonfinite:
            params = {p: trace[p] for p in inputs.params0}
            result.final_state = {n: trace[n] for n in running if n in trace}
        gaps = {n: max(_relative_gap(t[p], params[p]) for p in params) for n, t in traces.items()}
        result.per_step.append(
            {"step": step.index, "epoch": step.epoch, "loss": losses, "param_drift": gaps}
        )
        if on_step is not None:
            on_step(step.index)
        finite_losses = [abs(v) for v in losses.values() if math.isfinite(v)]
        loss_scale = loss_scale or max(finite_losses, default=0.0) or 1.0
        finite = {name: not nonfinite and _finite(params)}
        finite.update({n: _finite({p: t[p] for p in params}) for n, t in traces.items()})
        if _judge(result, step, losses, gaps, finite, tol.rtol, loss_scale):
            break
    result.final_params = {name: params, **{n: e.params() for n, e in references.items()}}
    return result


class _Unusable(Exception):
    """A trace drift cannot follow (no loss or parameters): a disagreement at that step."""

    def __init__(self, tensor: str, problem: str):
        super().__init__(problem)
        self.tensor, self.problem = tensor, problem


def _free_loop(engine, name: str, inputs: RunInputs):
    """An engine of the contract stepped through the schedule without reloading, as scratch's
    own loop is: its traces, stopping as that loop does where the loss turns non-finite."""
    X, Y = inputs.train
    where = f"--engine {name}: step()"
    wanted = ["loss", *inputs.params0]
    for step in inputs.schedule.steps:
        keywords = inputs.step_keywords(step)
        trace = as_arrays(engine.step(X[step.rows], Y[step.rows], **keywords), where, copy=True)
        missing = [n for n in wanted if n not in trace]
        if missing:
            raise _Unusable(missing[0], "not provided by the engine under test: drift follows it")
        # shaped and typed as the run's: the loss one number, W (n_in, n_out)
        for name, value in {"loss": np.zeros((), inputs.spec.dtype), **inputs.params0}.items():
            got = trace[name]
            if got.shape != value.shape or got.dtype != value.dtype:
                raise _Unusable(name, f"{got.shape} {got.dtype}, not {value.shape} {value.dtype}")
        if not np.isfinite(trace["loss"]):
            raise NonFiniteLossError(step.index, float(trace["loss"]))
        yield trace


def _next(loop, index: int) -> tuple[dict, bool]:
    """Scratch's next trace, and whether its loop stopped on a non-finite loss."""
    try:
        return next(loop), False
    except NonFiniteLossError as error:
        if error.step != index:
            raise
        return {}, True


def _finite(params: dict) -> bool:
    return all(np.isfinite(v).all() for v in params.values())


def _judge(result: DriftResult, step, losses, gaps, finite, rtol: float, scale: float) -> bool:
    """Record the step's finding, if any; True when the run must stop. ``finite[engine]``:
    its loss (for the engine under test, the first of ``losses``) and new parameters are
    finite."""
    finite = {n: finite[n] and math.isfinite(losses[n]) for n in losses}
    if not any(finite.values()):
        result.diverged = {
            "step": step.index,
            "epoch": step.epoch,
            "tensor": "loss and parameters",
            "description": f"training diverged at step {step.index} (epoch {step.epoch}): the "
            "loss or the parameters became non-finite in every engine (the engines agreed "
            "until then; nothing after it was verified)",
        }
        return True
    under_test, *references = losses
    ours = losses[under_test]
    for name in references:
        theirs = losses[name]
        both = finite[name] and finite[under_test]
        loss_gap = abs(theirs - ours) / scale if both else math.inf
        for tensor, gap in (("loss", loss_gap), ("parameters", gaps[name])):
            if not gap <= rtol:
                result.first_divergence = {
                    "step": step.index,
                    "epoch": step.epoch,
                    "engine": name,
                    "tensor": tensor,
                    "max_rel": gap,
                    "allowed": rtol,
                }
                return True
    return False


def _relative_gap(theirs: np.ndarray, ours: np.ndarray) -> float:
    """‖theirs - ours‖∞ / ‖ours‖∞ (absolute where ours is all zeros); inf if non-finite."""
    with np.errstate(invalid="ignore", over="ignore"):
        scale = float(np.max(np.abs(ours)))
        gap = float(np.max(np.abs(theirs.astype(np.float64) - ours)))
    if not (math.isfinite(gap) and math.isfinite(scale)):
        return math.inf
    return gap / scale if scale > 0 else gap


def drift_verdict(metrics: dict, dtype: str, under_test: str = SCRATCH_NAME) -> dict:
    """Engines agree when every reference's final loss on every split is within the drift
    tolerance of the engine under test's (``metrics[under_test]``); otherwise name the worst
    (engine, split)."""
    tol = DRIFT[dtype]
    worst = None
    for engine, splits in metrics.items():
        if engine == under_test:
            continue
        for split, m in splits.items():
            ours = metrics[under_test][split]["loss"]
            gap = abs(m["loss"] - ours) / abs(ours) if ours else abs(m["loss"])
            if not np.isfinite(gap):
                gap = float("inf")
            if worst is None or gap > worst["max_rel"]:
                worst = {"engine": engine, "split": split, "tensor": "final loss", "max_rel": gap}
    agree = worst is None or worst["max_rel"] <= tol.rtol
    if worst is not None:
        worst["allowed"] = tol.rtol
    return {"agree": agree, "worst": worst, "tolerance": vars(tol)}


def drift_decision(result: DriftResult, final: dict | None) -> str:
    """A drift run's verdict (``verdict.py``): its first finding, else whether the final
    losses agree (``final``, ``drift_verdict``'s; None where the run stopped early)."""
    disagreement = result.first_divergence is not None or (final is not None and not final["agree"])
    return decide(failure=result.failure, disagreement=disagreement, diverged=result.diverged)
