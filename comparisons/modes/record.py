"""Record mode: the references' traces of ``check``'s covering set, for ``check --recorded``.

Sound scratch is stepped through each case; before each step every reference is loaded with
scratch's state and takes the same step. The state and every reference's trace are kept
(``run/recorded.py`` describes the files). The states are only starting points: an engine
checked against the set is loaded with each of them in turn, so the set stays a fair judge
whatever scratch computed.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import numpy as np

from comparisons.report.environment import fingerprint
from comparisons.run import coverage
from comparisons.run.coverage import Case
from comparisons.run.engines import ScratchEngine, initial_state, make_references
from comparisons.run.inputs import build_inputs
from comparisons.run.recorded import FORMAT, digest, key, npz_bytes


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
        "environment": fingerprint(["scratch", *references]),
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
        given = inputs.given(step)
        for name, engine in refs.items():
            engine.set_state(params, state)
            trace = engine.step(X[step.rows], Y[step.rows], **given)
            arrays.update({key(step.index, name, k): np.asarray(v) for k, v in trace.items()})
        scratch.step(X[step.rows], Y[step.rows], **given)
    return arrays, inputs
