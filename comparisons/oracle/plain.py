"""The lockstep rule, as a plain loop: the specification the fast executor is held to.

Before each step, every reference is loaded with the engine under test's state, so that each
step's differences are that step's alone and do not compound. Every engine takes the step on
the same batch. Then every tensor of the trace is compared, in dataflow order, against an
allowance derived from roundoff, and the first tensor that fails decides the step's finding:

    agree      every tensor within its allowance, every value finite
    disagree   a tensor beyond its allowance, or non-finite in one engine and not another
    diverged   every engine turned non-finite at the same tensor, in the same places
    error      an engine raised

The run stops at an error or a diverged run, and at the first disagreement when asked to
(``stop_at_first``); otherwise it goes on and counts the divergent steps.

``chunked.py`` executes the same rule faster (chunks of steps, allowances and comparisons as
arrays, references in worker processes) and must report exactly what this loop reports
(``tests/comparisons/oracle/test_plain_and_chunked.py``). ``run --plain`` runs this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from comparisons.oracle.divergence import Diverged, Divergence, first_nonfinite
from comparisons.oracle.isolation import IN_PLACE
from comparisons.oracle.steps import (
    Failures,
    LockstepResult,
    StepRecord,
    Tally,
    allow_one,
    copies,
    take,
)
from comparisons.oracle.workers import replay
from scratch.trace_schema import batch_names


def lockstep_plain(
    inputs,
    references: Mapping,
    engine,
    *,
    stop_at_first: bool = False,
    steps=None,
    on_step: Callable[[int], None] | None = None,
    reload=None,
) -> LockstepResult:
    """The rule, one step at a time. ``engine``: the engine under test behind its adapter
    (``adapters.py``), already loaded with the run's start; ``reload``: the state it starts each
    step from, by step index, instead of its own (a recorded run's replay)."""
    result = LockstepResult(engines=[engine.under_test.name, *references])
    tally = Tally(engine, references, result)
    for step in inputs.schedule.steps if steps is None else steps:
        # 1. the engine under test takes the step from its state (kept for the references)
        t = take(engine, inputs, step, reload)
        # 2. every reference takes it from that same state, on the same batch: not after an
        #    engine raised, except the engine under test (its partial trace is compared too)
        own = t.failure
        for name, reference in references.items():
            if t.failure is not own:
                break
            # replay: reference.set_state(t.params, t.state), then reference.step(t.X, t.Y)
            traces, failure = replay(name, reference, [t.job])
            t.traces[name] = traces[0]
            t.failure = t.failure or failure
        # 3. every tensor against its allowance, in dataflow order; the first failure decides
        allow_one(inputs, t, engine.trace_names)
        failures = tally.compare(t)
        tally.record(t, judge(t, failures, engine, len(references)))
        if on_step is not None:
            on_step(step.index)
        if result.stops(stop_at_first):
            break
    result.final_params, result.final_state = (copies(part) for part in engine.state())
    result.not_provided = [n for n in engine.trace_names if n in engine.not_provided]
    return result


def judge(
    t: StepRecord, failures: Failures, engine, references: int
) -> Diverged | Divergence | None:
    """One step's finding from its comparisons: None where every tensor agreed; else the first
    failing tensor in dataflow order decides (``failures``: each failed comparison at its
    position; -1, before everything, is the engine writing into its inputs). Every engine
    non-finite there, in the same places, is a diverged run; anything else a divergence.
    Without references, the engine under test's first non-finite tensor is a diverged run.
    ``engine`` gives the dataflow order and where to look (the adapter, ``adapters.py``)."""
    step, trace = t.step, t.trace
    nonfinite = first_nonfinite(trace, engine.expected) if not references else None
    if not failures and nonfinite is None:
        return None
    if not failures:  # the engine under test alone, non-finite
        tensor, index, value = nonfinite
        names = [*batch_names(), *trace]
        upstream = names[: names.index(tensor)]
        return Diverged(
            step.index, step.epoch, step.batch, tensor, [t.ours], value, index, upstream
        )
    position = min(p for p, _ in failures)
    first = [c for p, c in failures if p == position]
    # what agreed before it: the batch, then the tensors the engine gave (none it left out)
    upstream = [
        n for n in engine.expected[: max(position, 0)] if n in trace or n not in engine.names
    ]
    if all(c.nonfinite == "both" for c in first) and len(first) == references:
        c = first[0]
        engines = list(t.all_traces)
        return Diverged(
            step.index,
            step.epoch,
            step.batch,
            c.tensor,
            engines,
            c.under_test_value,
            c.index,
            upstream,
        )
    c = next(c for c in first if c.nonfinite != "both")
    if position >= 0:
        look_at = engine.look_at(c.tensor)
    else:
        look_at = f"{t.writer}: writes into its input" if t.writer else IN_PLACE
    return Divergence(step.index, step.epoch, step.batch, c, upstream, look_at)
