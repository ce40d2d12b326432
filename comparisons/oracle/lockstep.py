"""The lockstep oracle: every engine, every step, every tensor.

Before each step every reference is loaded with scratch's parameters and optimizer state,
so each step's differences are that step's alone and do not compound; after it, every tensor
of the trace is compared in dataflow order against an allowance derived from roundoff. A
step ends in one of four ways, and the run stops at the first that is not agreement:

    agree      every tensor within its allowance, every value finite
    disagree   a tensor beyond its allowance, or non-finite in one engine and not another
    diverged   every engine turned non-finite at the same tensor, in the same places
    error      an engine raised

A step where every engine turned non-finite ends the run even after earlier disagreements:
nothing after it is verified, or counted (``steps_verified``).

Each engine gets its own copy of the parameters and state: scratch's inputs are checked
unchanged after its step (an in-place write is a divergence in itself), the references get
read-only views. Nothing is loaded into a reference that is not compared: what the references
are loaded with is the engine's state after the step before, and every entry of that state
(every parameter, optimizer buffer and running statistic, and the step count ``t``, a trace
tensor with every optimizer) is compared after that step with every reference's new state,
name by name, from the engine's ``state()`` where its trace leaves the entry out; the state
the oracle loads itself (the start, or a recorded step's) is read back and compared with
what was given, exactly; and scratch's batching (how many batches, which rows) is checked
exactly. An entry that goes missing or misshapen mid-run is a disagreement at that entry, and
the run ends at that step (``stopped``). After the last step, the final evaluation is
judged apart (``oracle/evaluation.py``).

The steps go in chunks, for speed: scratch takes a few steps of one batch shape (each trace
kept as it was when taken), the references replay them from scratch's states, and the
chunk's allowances and comparisons are computed as arrays with a row per step; then each
step is judged in order. Nothing a run reports depends on the chunks (a test proves it).
References in worker processes (``workers.py``) replay chunks while this process takes the
next ones; their chunks are judged in the same order, with the same findings.

The run keeps per-step summaries only, never every tensor of every step, so memory does not
grow with the tensors' size times the number of steps. The first step's traces are kept
whole, for the report's equation walkthrough.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from comparisons.oracle.chunk_compare import compare_rows
from comparisons.oracle.chunks import chunk_steps, chunks, chunks_ahead
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
    first_nonfinite,
)
from comparisons.oracle.driven import FOREIGN, NOT_PROVIDED, Driven
from comparisons.oracle.isolation import IN_PLACE, read_only
from comparisons.oracle.roundoff import Step as RoundoffStep
from comparisons.oracle.roundoff import Steps, stacked_allowances
from comparisons.oracle.workers import Worker, replay
from comparisons.oracle.worst import WorstTable
from comparisons.run.contract import as_arrays, load_state
from comparisons.run.engines import Engine, initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest
from data.schedule import Step
from scratch.trace_schema import batch_names


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
        if self.failure is not None:
            return "error"
        if self.first_divergence is not None:
            return "disagree"
        return "diverged" if self.diverged is not None else "agree"

    @property
    def agree(self) -> bool:
        return self.verdict == "agree"

    @property
    def steps_verified(self) -> int:
        """The steps judged whole: not one where every engine went non-finite (diverged), an
        engine raised, or the engine's state could not be kept."""
        ended = self.diverged is not None or self.failure is not None or bool(self.stopped)
        return max(self.steps_run - int(ended), 0)


def lockstep(
    inputs: RunInputs,
    references: Mapping[str, Engine],
    *,
    stop_at_first: bool = False,
    steps: list[Step] | None = None,
    on_step: Callable[[int], None] | None = None,
    chunk: int | None = None,
    under_test: UnderTest = SCRATCH,
    reload: Callable[[int], tuple[dict, dict]] | None = None,
) -> LockstepResult:
    """Step scratch and every reference through the schedule, comparing each step's trace.

    ``stop_at_first`` ends the run at the first divergent step (the quick answer a person
    changing scratch wants); otherwise the run goes on and counts the divergent steps. A
    diverged run and an engine's exception always end it.

    The work goes in chunks of up to ``chunk`` steps (default: ``chunk_steps``): scratch
    takes them, every reference replays them from scratch's states, the chunk's allowances
    and comparisons are computed together, as arrays with a row per step, and then each
    step is judged in order, exactly as if it had been taken alone: a run that stops at
    step k reports k steps and what scratch had after step k.

    ``under_test``: the engine in scratch's place (the results still call its slot
    "scratch"); any implementation of ``run/contract.py``. ``reload``: the state to load it
    with before each step, by step index (recorded references: ``run/recorded.py``), instead
    of letting it go on from its own.
    """
    engine = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    start = inputs.start(), initial_state(inputs.optimizer, inputs.params0)
    load_state(engine, *start, f"--engine {under_test.name}")
    result = LockstepResult(engines=["scratch", *references])
    result.per_tensor = {name: WorstTable() for name in references}
    runner = _Runner(inputs, Driven(inputs, under_test, engine), references, result, reload)
    runner.loaded = start
    size = chunk or chunk_steps(inputs)
    # With references in workers, scratch and the references kept here run ahead by up to
    # ``ahead`` chunks while the workers replay; the chunks are judged in order all the same.
    ahead = runner.ahead(size)
    pending: deque[_Chunk] = deque()
    stopped = False
    for group in chunks(inputs.schedule.steps if steps is None else steps, size):
        pending.append(runner.start(group))
        while pending and not stopped and (len(pending) > ahead or runner.ready()):
            stopped = runner.finish(pending.popleft(), stop_at_first, on_step)
        if stopped or (pending and any(t.failure or t.broken for t in pending[-1].taken)):
            break  # (a failure or a broken state taken: no step after it is judged)
    while pending and not stopped:
        stopped = runner.finish(pending.popleft(), stop_at_first, on_step)
    runner.drop()
    final = runner.final or tuple(_copies(as_arrays(part, "state()")) for part in engine.state())
    result.final_params, result.final_state = final
    result.not_provided = [n for n in runner.trace_names if n in runner.not_provided]
    return result


def _copies(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in params.items()}


@dataclass(eq=False)  # compared by identity
class _Taken:
    """One step as scratch took it, and then what the references and the judging added."""

    step: Step
    params: dict  # scratch's parameters before the step: read-only views of copies,
    state: dict  # as every reference is loaded with them; and its optimizer state
    X: np.ndarray  # the schedule's batch, read-only
    Y: np.ndarray
    checks: list[Comparison]  # scratch's batching against the schedule's
    trace: dict  # scratch's trace (partial, or empty, if scratch raised)
    failure: EngineFailure | None  # the first engine that raised at this step
    in_place: list[tuple[int, Comparison]]  # scratch's writes into its inputs
    writer: str  # the scratch function that wrote into its input, when one did
    traces: dict = field(default_factory=dict)  # every reference's that ran at this step
    allowed: dict = field(default_factory=dict)  # the roundoff allowances of scratch's trace
    compared: dict = field(default_factory=dict)  # per reference, where judged with the chunk
    after: tuple | None = None  # scratch's parameters and state after it, if it ran ahead
    missing: list = field(default_factory=list)  # required tensors its trace left out
    foreign: list = field(default_factory=list)  # names outside the schema it gave
    kept: list = field(default_factory=list)  # what it keeps unlike its trace (not scratch)
    given: dict = field(default_factory=dict)  # the step's dropout masks, for the references
    from_state: list = field(default_factory=list)  # its state's entries its trace left out
    broken: bool = False  # its state after the step cannot be loaded: the run ends here


@dataclass(eq=False)
class _Chunk:
    taken: list[_Taken]  # scratch's steps
    todo: list[_Taken]  # those the references replay
    here: dict  # the replays of the references kept in this process: name -> (traces, failure)


class _Runner:
    """One chunk of lockstep steps at a time; the findings go into ``result``."""

    def __init__(self, inputs, driven: Driven, references, result, reload=None):
        self.inputs, self.driven, self.refs, self.result = inputs, driven, references, result
        self.trace_names, self.names = driven.trace_names, driven.names
        self.expected = driven.expected
        self.not_provided: set[str] = set()
        self.reload = reload  # step index -> the state the engine under test starts it from
        self._kind_positions: dict[tuple[str, ...], tuple] = {}
        self.final: tuple | None = None  # scratch's params and state, if it stopped mid-chunk
        self.last: _Taken | None = None  # the last step taken
        self.workers = {n: e for n, e in references.items() if isinstance(e, Worker)}
        self.loaded: tuple | None = None  # the state the oracle loaded before the next step

    def start(self, steps: list[Step]) -> _Chunk:
        """Take one chunk with scratch and start every reference replaying it."""
        return self._submit(self._take(steps))

    def finish(self, chunk: _Chunk, stop_at_first: bool, on_step) -> bool:
        """Gather the chunk's replays, judge it; True when the run must stop."""
        result, taken = self.result, chunk.taken
        self._gather(chunk)
        self._allow(taken)
        self._compare_together(taken)
        for t in taken:
            self._finish(t)
            result.steps_run += 1
            if on_step is not None:
                on_step(t.step.index)
            if t.broken:
                result.stopped = (
                    f"the engine's state after step {t.step.index} cannot be loaded into the "
                    "references (an entry missing or misshapen): nothing after it was verified"
                )
            # a failure, a broken state, or every engine non-finite (whatever the verdict so
            # far): nothing after it can be verified
            stop = result.verdict in ("error", "diverged") or t.broken
            stop = stop or result.diverged is not None
            if stop or (stop_at_first and not result.agree):
                if t.after is not None:  # scratch ran ahead: its parameters after this step
                    self.final = tuple(_copies(part) for part in t.after)
                return True
        return False

    def ahead(self, size: int) -> int:
        """How many chunks may wait to be judged: none without workers (each is judged as
        soon as it is taken)."""
        return chunks_ahead(self.inputs, size, len(self.refs)) if self.workers else 0

    def ready(self) -> bool:
        """Whether every worker has answered the oldest chunk waiting."""
        return bool(self.workers) and all(w.ready() for w in self.workers.values())

    def drop(self) -> None:
        """The workers forget the chunks taken after the run stopped."""
        for worker in self.workers.values():
            worker.drop_pending()

    # --- scratch takes the chunk --------------------------------------------------------

    def _take(self, steps: list[Step]) -> list[_Taken]:
        """Scratch's steps, each from its own state, with the copies its references get;
        the chunk ends early where scratch raises."""
        X, Y = self.inputs.train
        driven = self.driven
        taken = []
        for step in steps:
            loaded = self.loaded  # the state the oracle loaded: the start, or a recorded one
            if self.reload is not None:
                loaded = self.reload(step.index)
                driven.load(*loaded)
            self.loaded = None
            params, state = driven.state()
            pristine = {k: np.copy(v) for k, v in {**params, **state}.items()}  # copy once
            held = [] if loaded is None else driven.loaded({**loaded[0], **loaded[1]}, pristine)
            views = {k: read_only(v) for k, v in pristine.items()}
            given = {k: views[k] for k in params}, {k: views[k] for k in state}
            if (before := self.last) is not None:
                before.after = given  # what scratch had after it, should the run stop there
                # Its trace, as it was then: the step scratch is about to take could write
                # into arrays the last one returned (its new parameters, a buffer it reuses).
                before.trace = {n: np.array(v) for n, v in before.trace.items()}
            Xb, Yb = read_only(X[step.rows]), read_only(Y[step.rows])
            checks, batch = driven.batch(step)
            trace, failure, foreign = driven.step(step, batch)
            in_place, writer = driven.in_place(step, (params, state), pristine, given, batch)
            t = _Taken(step, *given, Xb, Yb, checks, trace, failure, in_place, writer)
            t.given = self.inputs.given(step)
            taken.append(t)
            self.last = t
            if failure is not None:
                break
            t.foreign = foreign
            t.kept, entries, t.broken = driven.kept(step, trace, pristine)
            t.kept = held + t.kept
            # every entry of its state is compared: those its trace leaves out in their place
            t.from_state = [
                n
                for n in self.trace_names
                if n not in trace and n in entries and n not in driven.required
            ]
            if t.from_state:  # compared in the trace's place (copies: the engine may reuse)
                got = {**trace, **{n: np.array(entries[n]) for n in t.from_state}}
                t.trace = trace = {n: got[n] for n in self.trace_names if n in got}
            absent = [n for n in self.trace_names if n not in trace]
            t.missing = [n for n in absent if n in driven.required]
            self.not_provided.update(n for n in absent if n not in driven.required)
            if t.broken:
                break  # its state cannot be loaded into the references: no step after it
        return taken

    # --- the references replay it --------------------------------------------------------

    def _submit(self, taken: list[_Taken]) -> _Chunk:
        """Every reference starts on the chunk from scratch's state before each step, on the
        same batch: the workers first, then the references kept here, which replay it now.
        A reference runs every step but the one scratch failed at (its partial trace is
        compared too)."""
        todo = [t for t in taken if t.failure is None or t.failure.engine == "scratch"]
        jobs = [(t.step, t.params, t.state, t.X, t.Y, t.given) for t in todo]
        for worker in self.workers.values():  # (never empty: a chunk takes a step at least)
            worker.submit(jobs)
        here = {n: replay(n, e, jobs) for n, e in self.refs.items() if n not in self.workers}
        return _Chunk(taken, todo, here)

    def _gather(self, chunk: _Chunk) -> None:
        """Each reference's traces of the chunk, in the references' order: where one raised,
        the chunk ends at that step, and the references after it are not asked for it."""
        taken = chunk.taken
        for name in self.refs:
            traces, failure = chunk.here.get(name) or self.workers[name].collect()
            asked = {t for t in taken if t.failure is None or t.failure.engine == "scratch"}
            for t, trace in zip(chunk.todo, traces, strict=False):
                if t in asked:
                    t.traces[name] = trace
            failed = chunk.todo[len(traces) - 1] if failure is not None else None
            if failed is not None and failed in asked:
                at = taken.index(failed)
                taken[at].failure = taken[at].failure or failure
                del taken[at + 1 :]

    # --- the chunk's allowances and comparisons, together --------------------------------

    def _allow(self, taken: list[_Taken]) -> None:
        """The roundoff allowances of every complete trace of scratch's (none for a partial
        one: its comparisons fall back to the tolerance table), stacked where the traces
        share their shapes."""
        whole = [t for t in taken if t.failure is None and t.trace]
        groups: dict[tuple, list[tuple[_Taken, dict]]] = {}
        for t in whole:
            operands = self._operands(t)
            key = (t.X.shape, *((n, np.shape(v)) for n, v in operands.items()))
            groups.setdefault(key, []).append((t, operands))
        for group in groups.values():
            if len(group) > 1:
                stacked = _stacked_allowances(self.inputs, group)
                if stacked is not None:
                    for i, (t, operands) in enumerate(group):
                        own = _own(t.trace, operands)
                        t.allowed = {n: a[i] for n, a in stacked.items() if n in own}
                    continue
            for t, operands in group:
                allowed = _stacked_allowances(self.inputs, [(t, operands)]) or {}
                own = _own(t.trace, operands)
                t.allowed = {n: a[0] for n, a in allowed.items() if n in own}

    def _operands(self, t: _Taken) -> dict:
        """The values the allowances are computed from: scratch's trace, where a tensor the
        engine under test did not provide is taken from the first reference that has it
        (its roundoff is the same to first order; the tensor itself is not compared), and so
        is one it gave in another shape than the reference's (its own comparison fails on the
        shape; the tensors downstream of it keep allowances of their own)."""
        first = next(iter(t.traces.values()), {})
        shaped = all(np.shape(v) == np.shape(first.get(n, v)) for n, v in t.trace.items())
        if shaped and all(n in t.trace for n in self.trace_names):
            return t.trace
        filled = {}
        for n in self.trace_names:
            ours = n in t.trace and np.shape(t.trace[n]) == np.shape(first.get(n, t.trace[n]))
            source = t.trace if ours else next((tr for tr in t.traces.values() if n in tr), None)
            if source is not None:
                filled[n] = source[n]
        return filled

    def _compare_together(self, taken: list[_Taken]) -> None:
        """Each reference's traces of the chunk's regular steps (every check passed, every
        tensor present, shaped and typed as scratch's) against scratch's, as one matrix:
        where a step's every tensor is within its allowance, its comparison is done. Any
        other step is compared on its own when judged, with the full story of what failed."""
        regular = [
            t
            for t in taken
            if t.failure is None
            and not t.in_place
            and not t.kept
            and not t.foreign
            and all(c.ok for c in t.checks)
            and list(t.trace) == self.trace_names
            and t.allowed.keys() == t.trace.keys()
        ]
        if len(regular) < 2:
            return
        theirs = {name: [t.traces.get(name) for t in regular] for name in self.refs}
        ours, allowed = [t.trace for t in regular], [t.allowed for t in regular]
        for name, rows in compare_rows(ours, allowed, theirs, self.trace_names).items():
            for t, c in zip(regular, rows, strict=True):
                if c is not None:
                    t.compared[name] = c

    # --- each step judged, in order --------------------------------------------------------

    def _finish(self, t: _Taken) -> None:
        """The step's comparisons recorded, and its finding."""
        result = self.result
        summary = {"step": t.step.index, "epoch": t.step.epoch, "loss": {}, "worst_rel": {}}
        traces = {"scratch": t.trace, **t.traces}
        failures = list(t.in_place) + t.kept  # (first: at a tie, the fuller story)
        ours = None
        for name, trace in traces.items():
            summary["loss"][name] = _scalar(trace.get("loss"))
            if name == "scratch":
                continue
            compared = t.compared.get(name)
            if compared is None and trace:
                if ours is None:
                    ours = FlatTrace(t.trace, t.allowed)  # once per step, for every reference
                # what scratch's trace lacks is its failure (partial) or ``t.missing``
                theirs = {k: trace[k] for k in t.trace if k in trace}
                compared = compare_trace_flat(ours, theirs, name)
            failures += self._record(name, t.checks, compared, summary, t.step)
            failures += [
                (self.driven.position(n), mismatch(n, name, NOT_PROVIDED)) for n in t.missing
            ]
            failures += [(len(self.expected), mismatch(n, name, FOREIGN)) for n in t.foreign]
        if not self.refs:
            failures += [(i, c) for i, c in enumerate(t.checks) if not c.ok]
        if t.step.index == 0:
            result.first_step_traces = dict(traces)
        result.per_step.append(summary)
        if t.failure is not None:
            result.failure = t.failure
        self.writer = t.writer
        self._judge(t.step, failures, t.trace, t.params, t.state, t.X, t.Y, traces, t.allowed)

    def _record(self, name, checks, compared, summary, step) -> list[tuple[int, Comparison]]:
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
        return [(self.driven.position(c.tensor), c) for c in failed]

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

    def _judge(self, step, failures, trace, params, state, Xb, Yb, traces, allowed) -> None:
        """The step's finding, in dataflow order: the first failing tensor decides."""
        result, names = self.result, [*batch_names(), *trace]
        nonfinite = first_nonfinite(trace, self.expected) if not self.refs else None
        if not failures and nonfinite is None:
            return
        if not failures:  # scratch alone, non-finite
            tensor, index, value = nonfinite
            upstream = names[: names.index(tensor)]
            result.diverged = Diverged(
                step.index, step.epoch, step.batch, tensor, ["scratch"], value, index, upstream
            )
            result.diverged.after_disagreeing = result.divergent_steps
            return
        position = min(p for p, _ in failures)
        first = [c for p, c in failures if p == position]
        # what agreed before it: the batch, then the tensors the engine gave (none it left out)
        upstream = [
            n for n in self.expected[: max(position, 0)] if n in trace or n not in self.names
        ]
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
            result.diverged.after_disagreeing = result.divergent_steps
            return
        result.divergent_steps += 1
        if result.first_divergence is None:
            c = next(c for c in first if c.nonfinite != "both")
            look_at = self.driven.look_at(c.tensor)
            if position < 0:
                look_at = f"{self.writer}: writes into its input" if self.writer else IN_PLACE
            result.first_divergence = Divergence(
                step.index, step.epoch, step.batch, c, upstream, look_at
            )
            result.divergent_step = DivergentStep(params, state, Xb, Yb, traces, allowed)


def _own(trace: dict, operands: dict) -> set[str]:
    """The tensors of ``trace`` the allowances were computed from: not one a reference's
    value stood in for (misshapen in the trace, it is compared on its own, and fails)."""
    return {n for n in trace if n in operands and operands[n] is trace[n]}


def _scalar(value) -> float:
    """A loss as a number for the per-step summary: NaN where it is not one (a malformed
    loss is judged by the comparison, not here)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return float("nan")
    return float(array.reshape(-1)[0]) if array.size == 1 else float("nan")


def _stacked_allowances(inputs: RunInputs, group: list[tuple[_Taken, dict]]) -> dict | None:
    """The allowances of the steps of ``group`` (traces of one shape), stacked; None where
    they cannot be computed (scratch's trace is shaped unlike any correct one: every
    comparison of such a step falls back to the table, and its shapes fail anyway)."""
    try:
        steps = Steps.stack(
            [
                RoundoffStep(inputs.mlp, inputs.optimizer, t.params, t.state, t.X, t.Y)
                for t, _ in group
            ]
        )
        traces = {n: np.stack([operands[n] for _, operands in group]) for n in group[0][1]}
        with np.errstate(all="ignore"):  # huge or non-finite operands give huge allowances
            return stacked_allowances(steps, traces, inputs.spec.dtype)
    except (ValueError, TypeError, KeyError, IndexError):
        return None
