"""The fast executor of the lockstep rule (``plain.py`` states the rule; this must report
exactly what it reports, and a test holds it to that).

The steps go in chunks: the engine under test takes a few steps of one batch shape (each
trace kept as it was when taken), the references replay them from its states, and the chunk's
allowances and comparisons are computed as arrays with a row per step (``chunk_compare.py``);
then each step is judged in order by ``plain.judge``. References in worker processes
(``workers.py``) replay chunks while this process takes the next ones (run-ahead, bounded by
``chunks.py``); their chunks are judged in the same order, with the same findings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from comparisons.oracle.chunk_compare import RowMemory, compare_rows
from comparisons.oracle.chunks import chunk_steps, chunks, chunks_ahead
from comparisons.oracle.plain import judge
from comparisons.oracle.steps import (
    LockstepResult,
    StepRecord,
    Tally,
    allowances,
    copies,
    final_state,
    operands,
    own,
    take,
)
from comparisons.oracle.workers import Worker, replay
from data.schedule import Step


def lockstep_chunked(
    inputs,
    references: Mapping,
    engine,
    *,
    stop_at_first: bool = False,
    steps: list[Step] | None = None,
    on_step: Callable[[int], None] | None = None,
    chunk: int | None = None,
    reload=None,
) -> LockstepResult:
    """``plain.lockstep_plain``'s result, in chunks of up to ``chunk`` steps (default:
    ``chunks.chunk_steps``): a run that stops at step k reports k steps and what the engine
    had after step k, as if each step had been taken alone."""
    result = LockstepResult(engines=[engine.under_test.name, *references])
    runner = _Runner(inputs, engine, references, result, reload)
    size = chunk or chunk_steps(inputs)
    # With references in workers, the engine under test and the references kept here run
    # ahead by up to ``ahead`` chunks while the workers replay; the chunks are judged in order.
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
    runner.rewind(stop_at_first)
    final = runner.final or final_state(engine)
    result.final_params, result.final_state = final
    result.not_provided = [n for n in engine.trace_names if n in engine.not_provided]
    return result


@dataclass(eq=False)
class _Chunk:
    taken: list[StepRecord]  # the engine under test's steps
    todo: list[StepRecord]  # those the references replay
    here: dict  # the replays of the references kept in this process: name -> (traces, failure)


class _Runner:
    """One chunk of lockstep steps at a time; the findings go into ``result``."""

    def __init__(self, inputs, engine, references, result, reload=None):
        self.inputs, self.engine, self.refs, self.result = inputs, engine, references, result
        self.trace_names = engine.trace_names
        self.tally = Tally(engine, references, result)
        self.reload = reload  # step index -> the state the engine under test starts it from
        self.final: tuple | None = None  # its params and state, if it stopped mid-chunk
        self.last: StepRecord | None = None  # the last step taken
        self.workers = {n: e for n, e in references.items() if isinstance(e, Worker)}
        self.submitted: StepRecord | None = None  # the last step the references replay
        self.stopped_at: StepRecord | None = None  # the step the run stopped after
        self.memory = RowMemory()  # the chunks' comparisons work in it, one after another

    def start(self, steps: list[Step]) -> _Chunk:
        """Take one chunk with the engine under test and start every reference replaying it."""
        return self._submit(self._take(steps))

    def finish(self, chunk: _Chunk, stop_at_first: bool, on_step) -> bool:
        """Gather the chunk's replays, judge it; True when the run must stop."""
        taken = chunk.taken
        self._gather(chunk)
        self._allow(taken)
        self._compare_together(taken)
        for t in taken:
            failures = self.tally.compare(t)
            self.tally.record(t, judge(t, failures, self.engine, len(self.refs)))
            if on_step is not None:
                on_step(t.step.index)
            if self.result.stops(stop_at_first):
                if t.after is not None:  # it ran ahead: its parameters after this step
                    self.final = tuple(copies(part) for part in t.after)
                self.stopped_at = t
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

    def rewind(self, stop_at_first: bool) -> None:
        """Where the run stopped at a disagreement while the references had replayed steps
        after it, every reference takes that step again: each is left with what it had after
        the last step judged, as in the plain loop (the metrics read it)."""
        t = self.stopped_at
        if (
            t is None
            or t is self.submitted
            or not (stop_at_first and self.result.verdict == "disagree")
        ):
            return
        for worker in self.workers.values():
            worker.submit([t.job])
        for name, engine in self.refs.items():
            if name in self.workers:
                engine.collect()
            else:
                replay(name, engine, [t.job])

    def _take(self, steps: list[Step]) -> list[StepRecord]:
        """The engine's steps, each from its own state, with the copies its references get;
        the chunk ends early where it raises."""
        taken = []
        for step in steps:
            if (before := self.last) is not None:
                # Its trace, as it was then: the step it is about to take could write into
                # arrays the last one returned (its new parameters, a buffer it reuses).
                before.trace = {n: np.array(v) for n, v in before.trace.items()}
            t = take(self.engine, self.inputs, step, self.reload)
            if before is not None:
                before.after = t.params, t.state  # what it had after it, should the run stop
            taken.append(t)
            self.last = t
            if t.failure is not None or t.broken:
                break  # (its state after it cannot be loaded: no step after it)
        return taken

    def _submit(self, taken: list[StepRecord]) -> _Chunk:
        """Every reference starts on the chunk from the engine's state before each step, on
        the same batch: the workers first, then the references kept here, which replay it
        now. A reference runs every step but one the engine under test did not fail at and
        another engine did (its partial trace is compared too)."""
        todo = [t for t in taken if t.failure is None or t.failure.engine == t.ours]
        jobs = [t.job for t in todo]
        self.submitted = todo[-1] if todo else self.submitted
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
            asked = {t for t in taken if t.failure is None or t.failure.engine == t.ours}
            for t, trace in zip(chunk.todo, traces, strict=False):
                if t in asked:
                    t.traces[name] = trace
            failed = chunk.todo[len(traces) - 1] if failure is not None else None
            if failed is not None and failed in asked:
                at = taken.index(failed)
                taken[at].failure = taken[at].failure or failure
                del taken[at + 1 :]

    def _allow(self, taken: list[StepRecord]) -> None:
        """The roundoff allowances of every complete trace of the engine's (none for a partial
        one: its comparisons fall back to the tolerance table), stacked where the traces
        share their shapes."""
        whole = [t for t in taken if t.failure is None and t.trace]
        groups: dict[tuple, list[tuple[StepRecord, dict]]] = {}
        for t in whole:
            values = operands(t, self.trace_names)
            key = (t.X.shape, *((n, np.shape(v)) for n, v in values.items()))
            groups.setdefault(key, []).append((t, values))
        for group in groups.values():
            if len(group) > 1:
                stacked = allowances(self.inputs, group)
                if stacked is not None:
                    for i, (t, values) in enumerate(group):
                        mine = own(t.trace, values)
                        t.allowed = {n: a[i] for n, a in stacked.items() if n in mine}
                    continue
            for t, values in group:
                allowed = allowances(self.inputs, [(t, values)]) or {}
                mine = own(t.trace, values)
                t.allowed = {n: a[0] for n, a in allowed.items() if n in mine}

    def _compare_together(self, taken: list[StepRecord]) -> None:
        """Each reference's traces of the chunk's regular steps (every check passed, every
        tensor present, shaped and typed as the engine's) against the engine's, as one
        matrix: where a step's every tensor is within its allowance, its comparison is done.
        Any other step is compared on its own when judged, with the full story of what
        failed."""
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
        compared = compare_rows(ours, allowed, theirs, self.trace_names, self.memory)
        for name, rows in compared.items():
            for t, c in zip(regular, rows, strict=True):
                if c is not None:
                    t.compared[name] = c
