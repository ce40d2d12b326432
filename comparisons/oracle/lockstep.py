"""The lockstep oracle: every engine, every step, every tensor.

Before each step every reference is loaded with scratch's parameters and optimizer state,
so each step's differences are that step's alone and do not compound; after it, every tensor
of the trace is compared in dataflow order against an allowance derived from roundoff. A
step ends in one of four ways, and the run stops at the first that is not agreement:

    agree      every tensor within its allowance, every value finite
    disagree   a tensor beyond its allowance, or non-finite in one engine and not another
    diverged   every engine turned non-finite at the same tensor, in the same places
    error      an engine raised

Each engine gets its own copy of the parameters and state: scratch's inputs are checked
unchanged after its step (an in-place write is a divergence in itself), the references get
read-only views. Nothing is loaded into a reference that is not compared: the step count is
a trace tensor, and scratch's batching (how many batches, which rows) is checked exactly.

The run keeps per-step summaries only, never every tensor of every step, so memory does not
grow with the tensors' size times the number of steps. The first step's traces are kept
whole, for the report's equation walkthrough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

import scratch.training
from comparisons.oracle.batching import scratch_batching
from comparisons.oracle.compare import (
    Comparison,
    FlatTrace,
    compare_trace_flat,
    kind_or_unknown,
    mismatch,
)
from comparisons.oracle.divergence import (
    Diverged,
    Divergence,
    DivergentStep,
    EngineFailure,
    engine_failure,
)
from comparisons.oracle.roundoff import Step as RoundoffStep
from comparisons.oracle.roundoff import allowances
from comparisons.oracle.worst import WorstTable
from comparisons.run.engines import Engine, ScratchEngine, initial_state
from comparisons.run.inputs import RunInputs
from data.schedule import Step
from scratch.trace_schema import batch_names, describe, trace_names


@dataclass
class LockstepResult:
    engines: list[str]
    steps_run: int = 0
    first_divergence: Divergence | None = None
    divergent_step: DivergentStep | None = None
    divergent_steps: int = 0
    diverged: Diverged | None = None
    failure: EngineFailure | None = None
    per_tensor: dict[str, WorstTable] = field(default_factory=dict)  # per reference
    per_step: list[dict] = field(default_factory=list)
    first_step_traces: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    final_params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if self.failure is not None:
            return "error"
        if self.first_divergence is not None:
            return "disagree"
        return "diverged" if self.diverged is not None else "agree"

    @property
    def agree(self) -> bool:
        return self.verdict == "agree"


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
    changing scratch wants); otherwise the run goes on and counts the divergent steps. A
    diverged run and an engine's exception always end it.
    """
    scratch_engine = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    scratch_engine.set_state(inputs.params0, initial_state(inputs.optimizer, inputs.params0))
    result = LockstepResult(engines=["scratch", *references])
    result.per_tensor = {name: WorstTable() for name in references}
    runner = _Runner(inputs, scratch_engine, references, result)
    for step in inputs.schedule.steps if steps is None else steps:
        runner.run(step)
        result.steps_run += 1
        if on_step is not None:
            on_step(step.index)
        if result.verdict in ("error", "diverged") or (stop_at_first and not result.agree):
            break
    result.final_params = scratch_engine.params()
    return result


class _Runner:
    """One lockstep step at a time; the findings go into ``result``."""

    def __init__(self, inputs, scratch_engine, references, result):
        self.inputs, self.scratch, self.refs, self.result = (
            inputs,
            scratch_engine,
            references,
            result,
        )
        self.expected = [*batch_names(), *trace_names(inputs.mlp.n_layers, inputs.optimizer.name)]
        self._kind_positions: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
        self._batches: tuple[int, list[np.ndarray]] = (-1, [])

    def run(self, step: Step) -> None:
        inputs, result = self.inputs, self.result
        X, Y = inputs.train
        params, state = self.scratch.state()
        pristine = {k: np.copy(v) for k, v in {**params, **state}.items()}  # copy once
        views = {k: _read_only(v) for k, v in pristine.items()}
        given = {k: views[k] for k in params}, {k: views[k] for k in state}
        Xb, Yb = _read_only(X[step.rows]), _read_only(Y[step.rows])
        checks, batch = scratch_batching(inputs, step, X, Y, self._epoch_batches(step.epoch))
        trace, failure = self._step_scratch(step, batch)
        failures = [(-1, c) for c in _in_place(params, state, pristine, step)]  # compare once
        self.writer = self._find_writer(step, given, batch) if failures else ""
        traces = {"scratch": trace}
        for name, engine in self.refs.items():  # run even after scratch raised: its partial
            if failure is None or failure.engine == "scratch":  # trace is compared
                traces[name], raised = self._step_reference(name, engine, step, given, Xb, Yb)
                failure = failure or raised
        allowed = _allowances(inputs, *given, Xb, Yb, trace, failure)
        summary = {"step": step.index, "epoch": step.epoch, "loss": {}, "worst_rel": {}}
        ours = FlatTrace(trace, allowed)  # once per step, for every reference
        for name, t in traces.items():
            summary["loss"][name] = float(t["loss"]) if "loss" in t else float("nan")
            if name == "scratch":
                continue
            theirs = {k: t[k] for k in trace if k in t} if failure else t  # a partial trace
            compared = compare_trace_flat(ours, theirs, name) if t else None
            failures += self._record(name, checks, compared, summary, step)
        if not self.refs:
            failures += [(i, c) for i, c in enumerate(checks) if not c.ok]
        if step.index == 0:
            result.first_step_traces = dict(traces)
        result.per_step.append(summary)
        if failure is not None:
            result.failure = failure
        self._judge(step, failures, trace, *given, Xb, Yb, traces, allowed)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """Scratch's batching of one epoch, made once per epoch (the function is looked up on
        the module when it is called, so that a fault patched into scratch shows here)."""
        if self._batches[0] != epoch:
            schedule = self.inputs.schedule
            made = scratch.training.epoch_batches(
                schedule.orders[epoch], schedule.batch_size, schedule.drop_last
            )
            self._batches = (epoch, made)
        return self._batches[1]

    def _step_scratch(self, step, batch) -> tuple[dict, EngineFailure | None]:
        if batch is None:
            return {}, None
        try:
            with np.errstate(all="ignore"):  # a NaN or inf is judged, not warned about
                return self.scratch.step(*batch), None
        except Exception as error:  # a bug in scratch is a verdict, not a crash
            failure, partial = engine_failure("scratch", "scratch", step, error)
            failure.computed = [n for n in self.expected if n in partial]
            return {n: partial[n] for n in failure.computed}, failure

    def _find_writer(self, step, given, batch) -> str:
        """Which function of scratch writes into its input: the same step again, on
        read-only inputs, so that the write itself raises and its frame names it."""
        engine = ScratchEngine(self.inputs.mlp, self.inputs.optimizer, self.inputs.spec.dtype)
        engine.set_state(*given)
        try:
            with np.errstate(all="ignore"):
                engine.step(*batch)
        except ValueError as error:  # "assignment destination is read-only"
            where = engine_failure("scratch", "scratch", step, error)[0].where
            file_line, _, function = where.partition(" in ")
            file, _, line = file_line.rpartition(":")
            return f"{file}:{function} (line {line})"
        return ""

    def _step_reference(self, name, engine, step, given, Xb, Yb):
        try:
            engine.set_state(*given)
            with np.errstate(all="ignore"):
                return engine.step(Xb, Yb), None
        except Exception as error:
            package = getattr(engine, "package", type(engine).__module__.split(".")[0])
            failure, _ = engine_failure(name, package, step, error)
            return {}, failure

    def _record(self, name, checks, compared, summary, step) -> list[tuple[int, Comparison]]:
        """The step's comparisons against one reference into the run's worst errors and the
        step's summary (the worst relative error per kind); the failures, by position."""
        names = [c.tensor for c in checks] + (compared.names if compared else [])
        ratio = np.array([c.ratio for c in checks] + ([*compared.ratio] if compared else []))
        max_abs = np.array([c.max_abs for c in checks] + ([*compared.max_abs] if compared else []))
        max_rel = np.array([c.max_rel for c in checks] + ([*compared.max_rel] if compared else []))
        self.result.per_tensor[name].update(tuple(names), ratio, max_abs, max_rel, step.index)
        summary["worst_rel"][name] = {
            kind: float(max_rel[at].max()) for kind, at in self._kinds(tuple(names)).items()
        }
        failed = [c for c in checks if not c.ok] + (compared.failed if compared else [])
        return [(_position(self.expected, c.tensor), c) for c in failed]

    def _kinds(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Each kind's positions among ``names``, in order of first appearance (cached)."""
        if names not in self._kind_positions:
            kinds: dict[str, list[int]] = {}
            for i, n in enumerate(names):
                kinds.setdefault(kind_or_unknown(n), []).append(i)
            self._kind_positions[names] = {k: np.array(v) for k, v in kinds.items()}
        return self._kind_positions[names]

    def _judge(self, step, failures, trace, params, state, Xb, Yb, traces, allowed) -> None:
        """The step's finding, in dataflow order: the first failing tensor decides."""
        result, names = self.result, [*batch_names(), *trace]
        nonfinite = _first_nonfinite(trace, self.expected) if not self.refs else None
        if not failures and nonfinite is None:
            return
        if not failures:  # scratch alone, non-finite
            tensor, index, value = nonfinite
            upstream = names[: names.index(tensor)]
            result.diverged = Diverged(
                step.index, step.epoch, step.batch, tensor, ["scratch"], value, index, upstream
            )
            return
        position = min(p for p, _ in failures)
        first = [c for p, c in failures if p == position]
        upstream = self.expected[: max(position, 0)]
        if all(c.nonfinite == "both" for c in first) and len(first) == len(self.refs):
            c = first[0]
            result.diverged = Diverged(
                step.index,
                step.epoch,
                step.batch,
                c.tensor,
                list(traces),
                c.scratch_value,
                c.index,
                upstream,
            )
            return
        result.divergent_steps += 1
        if result.first_divergence is None:
            c = next(c for c in first if c.nonfinite != "both")
            look_at = _look_at(self.inputs, c.tensor)
            if position < 0:
                look_at = f"{self.writer}: writes into its input" if self.writer else IN_PLACE
            result.first_divergence = Divergence(
                step.index, step.epoch, step.batch, c, upstream, look_at
            )
            result.divergent_step = DivergentStep(params, state, Xb, Yb, traces, allowed)


def _position(expected: list[str], tensor: str) -> int:
    return expected.index(tensor) if tensor in expected else len(expected)


IN_PLACE = "scratch/training.py:train_step and what it calls (an in-place write to an input)"


def _look_at(inputs: RunInputs, tensor: str) -> str:
    """Where a reader should look when ``tensor`` is the first to disagree."""
    try:
        return describe(tensor, inputs.mlp, inputs.optimizer).producer
    except KeyError:
        return ""


def _read_only(array: np.ndarray) -> np.ndarray:
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


def _in_place(params: dict, state: dict, pristine: dict, step: Step) -> list[Comparison]:
    """Scratch's inputs after its step against the copies taken before it: any change is an
    in-place write, reported before any tensor comparison."""
    changed = [
        k
        for k, v in {**params, **state}.items()
        if not np.array_equal(np.asarray(v), pristine[k], equal_nan=True)
    ]
    return [
        mismatch(k, "scratch", f"scratch modified {k} in place during step {step.index}")
        for k in changed
    ]


def _allowances(inputs, params, state, Xb, Yb, trace, failure) -> dict:
    """The roundoff allowance of every tensor of scratch's trace (none for a partial trace:
    the comparison then falls back to the tolerance table)."""
    if failure is not None or not trace:
        return {}
    step = RoundoffStep(inputs.mlp, inputs.optimizer, params, state, Xb, Yb)
    with np.errstate(all="ignore"):  # huge or non-finite operands give huge allowances
        return allowances(step, trace, inputs.spec.dtype)


def _first_nonfinite(trace: dict, order: list[str]):
    """(tensor, index, value) of the first non-finite value of the trace, in dataflow order."""
    for name in order:
        if name in trace:
            value = np.asarray(trace[name], np.float64)
            bad = np.flatnonzero(~np.isfinite(value.reshape(-1)))
            if bad.size:
                index = tuple(map(int, np.unravel_index(bad[0], value.shape))) if value.ndim else ()
                return name, index, float(value.reshape(-1)[bad[0]])
    return None
