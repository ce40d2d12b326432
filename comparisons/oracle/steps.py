"""What both lockstep executors share: a step's record, the run's result, and the accounting
of one step's comparisons (the rule itself is ``plain.py``; ``chunked.py`` is its fast
executor). Nothing here decides a finding: ``plain.judge`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from comparisons.oracle.adapters import FOREIGN, NOT_PROVIDED, EngineAdapter
from comparisons.oracle.compare import (
    Comparison,
    FlatMemory,
    FlatTrace,
    compare_trace_flat,
    kind_or_unknown,
    mismatch,
)
from comparisons.oracle.divergence import Diverged, Divergence, DivergentStep, EngineFailure
from comparisons.oracle.isolation import read_only
from comparisons.oracle.roundoff import RoundoffStep, RoundoffSteps, stacked_allowances
from comparisons.oracle.verdict import decide
from comparisons.oracle.worst import WorstTable
from comparisons.run.inputs import RunInputs
from data.schedule import Step

Failures = list[tuple[int, Comparison]]  # failed comparisons, each at its dataflow position


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
    final_state: dict = field(default_factory=dict)  # its state then (running statistics)
    # optional tensors the engine under test left out: never compared (the report lists them)
    not_provided: list[str] = field(default_factory=list)
    stopped: str = ""  # why the run ended before its last step, where not a verdict's reason

    @property
    def verdict(self) -> str:
        return decide(
            failure=self.failure,
            disagreement=self.first_divergence is not None,
            diverged=self.diverged,
        )

    @property
    def agree(self) -> bool:
        return self.verdict == "agree"

    @property
    def steps_verified(self) -> int:
        """The steps judged whole: not one where every engine went non-finite (diverged), an
        engine raised, or the engine's state could not be kept."""
        ended = self.diverged is not None or self.failure is not None or bool(self.stopped)
        return max(self.steps_run - int(ended), 0)

    def stops(self, stop_at_first: bool) -> bool:
        """Whether the run ends after the step just recorded: an error, every engine
        non-finite (even after earlier disagreements) or a state that cannot be loaded into
        the references always ends it, as nothing after it can be verified; a disagreement
        when ``stop_at_first``."""
        ended = self.failure is not None or self.diverged is not None or bool(self.stopped)
        return ended or (stop_at_first and not self.agree)


@dataclass(eq=False)  # compared by identity
class StepRecord:
    """One step as the engine under test took it, then what the references and the
    comparisons added."""

    step: Step
    params: dict  # its parameters before the step: read-only views of copies,
    state: dict  # as every reference is loaded with them; and its optimizer state
    X: np.ndarray  # the schedule's batch, read-only
    Y: np.ndarray
    checks: list[Comparison] = field(default_factory=list)  # its batching against the schedule
    trace: dict = field(default_factory=dict)  # its trace (partial, or empty, if it raised)
    failure: EngineFailure | None = None  # the first engine that raised at this step
    in_place: Failures = field(default_factory=list)  # its writes into its inputs
    writer: str = ""  # the function that wrote into its input, when one did
    masks: dict = field(default_factory=dict)  # the step's dropout masks, for the references
    traces: dict = field(default_factory=dict)  # every reference's that ran at this step
    allowed: dict = field(default_factory=dict)  # the roundoff allowances of its trace
    compared: dict = field(default_factory=dict)  # per reference, where compared already
    after: tuple | None = None  # its parameters and state after it, if it ran ahead
    missing: list = field(default_factory=list)  # required tensors its trace left out
    foreign: list = field(default_factory=list)  # names outside the schema it gave
    kept: Failures = field(default_factory=list)  # what its state after it holds wrong
    from_state: list = field(default_factory=list)  # its state's entries its trace left out
    broken: bool = False  # its state after the step cannot be loaded: the run ends here
    ours: str = ""  # the engine under test's name: its trace's key, and what messages call it

    @property
    def job(self) -> tuple:
        """What a reference replays: the step, from this state, on this batch."""
        return self.step, self.params, self.state, self.X, self.Y, self.masks

    @property
    def all_traces(self) -> dict:
        """Every engine's trace of the step, the engine under test's first."""
        return {self.ours: self.trace, **self.traces}


def take(engine: EngineAdapter, inputs: RunInputs, step: Step, reload=None) -> StepRecord:
    """The engine under test takes ``step`` from the state it reports (or the one ``reload``
    gives): the record holds that state as every reference will be loaded with it. A state
    the oracle loaded is read back and checked to be what it was given; the state after the
    step is read and judged (``EngineAdapter.kept``), and its entries the trace leaves out are
    compared in the trace's place."""
    if reload is not None:
        engine.given = reload(step.index)
        engine.load(*engine.given)
    params, state = engine.state()
    pristine = {k: np.copy(v) for k, v in {**params, **state}.items()}  # copied once
    held = engine.read_back(pristine)
    views = {k: read_only(v) for k, v in pristine.items()}
    loaded = {k: views[k] for k in params}, {k: views[k] for k in state}
    X, Y = inputs.train
    t = StepRecord(step, *loaded, read_only(X[step.rows]), read_only(Y[step.rows]))
    t.ours = engine.under_test.name
    t.masks = inputs.step_keywords(step)
    t.checks, batch = engine.batch(step)
    t.trace, t.failure, foreign = engine.step(step, batch)
    t.in_place, t.writer = engine.in_place(step, (params, state), pristine, loaded, batch)
    if t.failure is None:
        t.foreign = foreign
        kept, entries, t.broken = engine.kept(step, t.trace, pristine)
        t.kept = held + kept
        # every entry of its state is compared: those its trace leaves out in their place
        names = engine.trace_names
        t.from_state = [
            n for n in names if n not in t.trace and n in entries and n not in engine.required
        ]
        if t.from_state:  # (copies: the engine may reuse its arrays)
            got = {**t.trace, **{n: np.array(entries[n]) for n in t.from_state}}
            t.trace = {n: got[n] for n in names if n in got}
        absent = [n for n in names if n not in t.trace]
        t.missing = [n for n in absent if n in engine.required]
        engine.not_provided.update(n for n in absent if n not in engine.required)
    return t


def final_state(engine: EngineAdapter) -> tuple[dict, dict]:
    """Copies of the engine's parameters and state as it reports them at the end of a run
    (unchecked: a state judged broken after the last step is reported as it is)."""
    params, state = engine.state_read()
    return copies(params), copies(state)


def operands(t: StepRecord, names: list[str]) -> dict:
    """The values the allowances are computed from: the engine's trace, where a tensor it did
    not provide is taken from the first reference that has it (its roundoff is the same to
    first order; the tensor itself is not compared), and so is one it gave in another shape
    than the reference's (its own comparison fails on the shape; the tensors downstream of it
    keep allowances of their own)."""
    first = next(iter(t.traces.values()), {})
    shaped = all(np.shape(v) == np.shape(first.get(n, v)) for n, v in t.trace.items())
    if shaped and all(n in t.trace for n in names):
        return t.trace
    filled = {}
    for n in names:
        ours = n in t.trace and np.shape(t.trace[n]) == np.shape(first.get(n, t.trace[n]))
        source = t.trace if ours else next((r for r in t.traces.values() if n in r), None)
        if source is not None:
            filled[n] = source[n]
    return filled


def own(trace: dict, values: dict) -> set[str]:
    """The tensors of ``trace`` the allowances were computed from: not one a reference's
    value stood in for (misshapen in the trace, it is compared on its own, and fails)."""
    return {n for n in trace if n in values and values[n] is trace[n]}


def allowances(inputs: RunInputs, group: list[tuple[StepRecord, dict]]) -> dict | None:
    """The roundoff allowances of the steps of ``group`` (traces of one shape, each with its
    ``operands``), stacked; None where they cannot be computed (a trace shaped unlike any
    correct one: its comparisons fall back to the table, and its shapes fail anyway)."""
    try:
        steps = RoundoffSteps.stack(
            [
                RoundoffStep(inputs.mlp, inputs.optimizer, t.params, t.state, t.X, t.Y)
                for t, _ in group
            ]
        )
        traces = {n: np.stack([values[n] for _, values in group]) for n in group[0][1]}
        with np.errstate(all="ignore"):  # huge or non-finite operands give huge allowances
            return stacked_allowances(steps, traces, inputs.spec.dtype)
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def allow_one(inputs: RunInputs, t: StepRecord, names: list[str]) -> None:
    """``t.allowed`` for one step: none where the step failed or has no trace."""
    if t.failure is None and t.trace:
        values = operands(t, names)
        allowed = allowances(inputs, [(t, values)]) or {}
        mine = own(t.trace, values)
        t.allowed = {n: a[0] for n, a in allowed.items() if n in mine}


class Tally:
    """A run's accounting: each step's comparisons against every reference, the worst errors
    per tensor, the per-step summaries; and the findings ``plain.judge`` gives."""

    def __init__(self, engine: EngineAdapter, references: Mapping, result: LockstepResult):
        self.engine, self.refs, self.result = engine, references, result
        result.per_tensor = {name: WorstTable() for name in references}
        self._kind_positions: dict[tuple[str, ...], tuple] = {}
        self._memory = FlatMemory()  # each step's flat comparisons work in it

    def compare(self, t: StepRecord) -> Failures:
        """Every tensor of the step against every reference (where not ``t.compared``
        already), recorded; the failures, each at its position in dataflow order."""
        result, engine = self.result, self.engine
        summary = {"step": t.step.index, "epoch": t.step.epoch, "loss": {}, "worst_rel": {}}
        traces = t.all_traces
        failures = list(t.in_place) + t.kept  # (first: at a tie, the fuller story)
        ours = None
        for name, trace in traces.items():
            summary["loss"][name] = _scalar(trace.get("loss"))
        for name, trace in t.traces.items():
            compared = t.compared.get(name)
            if compared is None and trace:
                if ours is None:
                    # once, for every reference
                    ours = FlatTrace(t.trace, t.allowed, t.ours, self._memory)
                # what the engine's trace lacks is its failure (partial) or ``t.missing``
                theirs = {k: trace[k] for k in t.trace if k in trace}
                compared = compare_trace_flat(ours, theirs, name)
            failures += self._record(name, t.checks, compared, summary, t.step)
            failures += [
                (engine.position(n), mismatch(n, name, NOT_PROVIDED, t.ours)) for n in t.missing
            ]
            failures += [
                (len(engine.expected), mismatch(n, name, FOREIGN, t.ours)) for n in t.foreign
            ]
        if not self.refs:
            failures += [(i, c) for i, c in enumerate(t.checks) if not c.ok]
        if t.step.index == 0:
            result.first_step_traces = {
                n: {k: np.array(v) for k, v in trace.items()} for n, trace in traces.items()
            }
        result.per_step.append(summary)
        if t.failure is not None:
            result.failure = t.failure
        return failures

    def record(self, t: StepRecord, finding: Diverged | Divergence | None) -> None:
        """The step's finding into the result: a diverged run, or a disagreement (the first
        one kept with everything needed to look at its step again)."""
        result = self.result
        result.steps_run += 1
        if t.broken:
            result.stopped = (
                f"the engine's state after step {t.step.index} cannot be loaded into the "
                "references (an entry missing or misshapen): nothing after it was verified"
            )
        if isinstance(finding, Diverged):
            finding.after_disagreeing = result.divergent_steps
            result.diverged = finding
        elif isinstance(finding, Divergence):
            result.divergent_steps += 1
            if result.first_divergence is None:
                result.first_divergence = finding
                traces = t.all_traces
                result.divergent_step = DivergentStep(
                    t.params, t.state, t.X, t.Y, traces, t.allowed
                )

    def _record(self, name, checks, compared, summary, step) -> Failures:
        """The step's comparisons against one reference into the run's worst errors and the
        step's summary (the worst relative error per kind); the failures, by position."""
        names = tuple(c.tensor for c in checks) + tuple(compared.names if compared else ())
        columns = [np.array([[c.ratio, c.max_abs, c.max_rel] for c in checks]).reshape(-1, 3)]
        if compared:
            columns.append(np.stack([compared.ratio, compared.max_abs, compared.max_rel], 1))
        ratio, max_abs, max_rel = np.concatenate(columns).T
        self.result.per_tensor[name].update(names, ratio, max_abs, max_rel, step.index)
        kinds, order, starts = self._kinds(names)
        worst = np.maximum.reduceat(max_rel[order], starts) if len(order) else []
        summary["worst_rel"][name] = dict(zip(kinds, map(float, worst), strict=True))
        failed = [c for c in checks if not c.ok] + (compared.failed if compared else [])
        return [(self.engine.position(c.tensor), c) for c in failed]

    def _kinds(self, names: tuple[str, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The kinds among ``names`` in order of first appearance, the positions of the names
        grouped by kind, and where each kind's group starts (cached per tuple of names)."""
        if names not in self._kind_positions:
            kinds: dict[str, list[int]] = {}
            for i, n in enumerate(names):
                kinds.setdefault(kind_or_unknown(n), []).append(i)
            order = [i for positions in kinds.values() for i in positions]
            sizes = [len(p) for p in kinds.values()]
            starts = np.cumsum([0, *sizes[:-1]])
            self._kind_positions[names] = (list(kinds), np.array(order, dtype=int), starts)
        return self._kind_positions[names]


def _scalar(value) -> float:
    """A loss as a number for the per-step summary: NaN where it is not one (a malformed
    loss is judged by the comparison, not here)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return float("nan")
    return float(array.reshape(-1)[0]) if array.size == 1 else float("nan")


def copies(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in params.items()}
