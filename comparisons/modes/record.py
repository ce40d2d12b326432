"""Record mode: the references' traces of ``check``'s covering set, for ``check --recorded``.

Sound scratch is stepped through each case; before each step every reference is loaded with
scratch's state and takes the same step. The state and every reference's trace are kept
(``run/recorded.py`` describes the files). The states are only starting points: an engine
checked against the set is loaded with each of them in turn, so the set stays a fair judge
whatever scratch computed.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable

import numpy as np

from comparisons.oracle.compare import compare_traces
from comparisons.oracle.evaluation import compare_split, outputs_from
from comparisons.oracle.roundoff import RoundoffStep, allowances
from comparisons.report.environment import fingerprint, numerics
from comparisons.run import coverage
from comparisons.run.coverage import Case
from comparisons.run.engines import ScratchEngine, initial_state, make_references
from comparisons.run.inputs import build_inputs
from comparisons.run.recorded import EVALUATION, FORMAT, Recorded, digest, key, npz_bytes
from scratch.trace_schema import names_of


def record(
    references: tuple[str, ...],
    cases: tuple[Case, ...] | None = None,
    on_case: Callable[[int], None] | None = None,
) -> tuple[dict, dict[str, bytes]]:
    """The manifest and the ``.npz`` files' bytes, by file name."""
    manifest: dict = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "references": list(references),
        "environment": {},  # once the references are made: they set their thread counts
        "cases": [],
    }
    files = {}
    for i, case in enumerate(coverage.cases() if cases is None else cases):
        arrays, inputs = record_case(case, references)
        name = f"{i:02d}-{case.name}.npz"
        files[name] = npz_bytes(arrays)
        manifest["cases"].append(
            {
                "name": case.name,
                "file": name,
                "spec": inputs.spec.to_dict(),
                "schedule_sha256": inputs.schedule.sha256,
                "steps": len(inputs.schedule),
                "digests": {k: digest(v) for k, v in arrays.items()},
            }
        )
        if on_case is not None:
            on_case(i)
    manifest["environment"] = fingerprint(list(references))
    return manifest, files


def record_case(case: Case, references: tuple[str, ...]):
    """Every step's starting state and every reference's trace of it, by key."""
    inputs = build_inputs(case.spec(references))
    refs = make_references(inputs)
    scratch = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    scratch.set_state(inputs.start(), initial_state(inputs.optimizer, inputs.params0))
    X, Y = inputs.train
    arrays: dict[str, np.ndarray] = {}
    for step in inputs.schedule.steps:
        params, state = scratch.state()
        for part, values in (("params", params), ("state", state)):
            arrays.update({key(step.index, part, k): np.asarray(v) for k, v in values.items()})
        given = inputs.step_keywords(step)
        for name, engine in refs.items():
            engine.set_state(params, state)
            trace = engine.step(X[step.rows], Y[step.rows], **given)
            arrays.update({key(step.index, name, k): np.asarray(v) for k, v in trace.items()})
        scratch.step(X[step.rows], Y[step.rows], **given)
    # the final evaluation: the state after the last step, and every reference's outputs on
    # every split from it (the trace of each step holds the reference's state after it)
    params, state = scratch.state()
    for part, values in (("params", params), ("state", state)):
        arrays.update({key(EVALUATION, part, k): np.asarray(v) for k, v in values.items()})
    splits = {split: X_ for split, (X_, _) in inputs.splits.items()}
    for name, engine in refs.items():
        outputs = outputs_from(engine, params, state, splits)
        arrays.update({key(EVALUATION, name, s): np.asarray(v) for s, v in outputs.items()})
    return arrays, inputs


def verify(recorded: Recorded, cases: tuple[Case, ...] | None = None) -> tuple[bool, list[str]]:
    """The recorded set against the live references, judged as ``check --recorded`` judges:
    each recorded state is loaded into every live reference, which takes the step, and its
    trace is compared with the recorded one. Bitwise where this environment's numerics (the
    CPU and its instruction sets, the kernel-selecting variables, the libraries, their
    versions and threads: ``environment.numerics``) are the recording's; else within each
    tensor's roundoff allowance from the recorded step, since another CPU's kernels round
    otherwise. Returns (bitwise or not, every problem found, one line each).

    A case recorded from another spec or schedule than the covering set's now, or with
    other tensors than the trace schema's, is refused (``RecordedError``) as ``check`` does.
    """
    references = recorded.references
    now_env = fingerprint(list(references))
    bitwise = numerics(recorded.manifest["environment"]) == numerics(now_env)
    problems = []
    for case in coverage.cases() if cases is None else cases:
        inputs = build_inputs(case.spec(references))
        names = names_of(inputs.mlp, inputs.optimizer)
        kept = recorded.case(
            case.name, json.loads(json.dumps(inputs.spec.to_dict())), inputs.schedule.sha256, names
        )
        refs = make_references(inputs)
        X, Y = inputs.train
        for step in inputs.schedule.steps:
            params, state = kept.state(step.index)
            Xb, Yb = X[step.rows], Y[step.rows]
            for name, engine in refs.items():
                engine.set_state(params, state)
                now = engine.step(Xb, Yb, **inputs.step_keywords(step))
                then = kept.trace(name, step.index)
                if bitwise:
                    found = [_bits(n, then[n], now.get(n)) for n in then]
                else:
                    roundoff = RoundoffStep(inputs.mlp, inputs.optimizer, params, state, Xb, Yb)
                    allowed = allowances(roundoff, then, inputs.spec.dtype)
                    found = [
                        c.describe() for c in compare_traces(then, now, name, allowed) if not c.ok
                    ]
                where = f"{case.name} step {step.index} {name}"
                problems += [f"{where}: {p}" for p in found if p]
        problems += _verify_evaluation(inputs, kept, refs, bool(bitwise), case.name)
    return bool(bitwise), problems


def _verify_evaluation(inputs, kept, refs, bitwise: bool, case: str) -> list[str]:
    """The recorded evaluation outputs against every live reference's, from the recorded
    final state: bitwise, or within the evaluation's allowances."""
    params, state = kept.state(EVALUATION)
    splits = {split: X for split, (X, _) in inputs.splits.items()}
    problems = []
    for name, engine in refs.items():
        now = outputs_from(engine, params, state, splits)
        then = kept.parts[(EVALUATION, name)]
        for split, (_, Y) in inputs.splits.items():
            if bitwise:
                found = [_bits(f"{split} outputs", then[split], now.get(split))]
            else:
                compared = compare_split(inputs, split, now[split], then[split], Y, name)
                found = [c.describe() for c in compared if not c.ok]
            problems += [f"{case} evaluation {name}: {p}" for p in found if p]
    return problems


def _bits(tensor: str, then: np.ndarray, now: np.ndarray | None) -> str:
    """ "" where ``now`` is ``then`` to the bit (dtype, shape, every value, NaN included),
    else what differs."""
    if now is None:
        return f"{tensor} is missing from the trace computed now"
    now = np.asarray(now)
    if (now.dtype, now.shape) != (then.dtype, then.shape):
        return f"{tensor} is {now.dtype}{now.shape} now, {then.dtype}{then.shape} recorded"
    if np.ascontiguousarray(now).tobytes() == np.ascontiguousarray(then).tobytes():
        return ""
    with np.errstate(all="ignore"):
        worst = float(np.nanmax(np.abs(now.astype(np.float64) - then.astype(np.float64))))
    return (
        f"{tensor} differs in its bits from the recording made in this same environment "
        f"(max |Δ| {worst:.3g}): the references are not deterministic here"
    )
