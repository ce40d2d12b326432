"""The lockstep takes its steps in chunks (scratch runs ahead, the references replay, the
chunk's allowances and comparisons are computed as arrays); a chunk must change nothing that a
run reports: the same verdict, steps, divergence, worst errors, per-step summaries and final
parameters as one step at a time, for a sound scratch, for every fault of the catalogue, for
a reference that raises mid-chunk, stopping at the first divergence or not."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from comparisons.faults.catalogue import FAULTS
from comparisons.oracle import chunks as chunks_module
from comparisons.oracle.chunks import chunk_steps
from comparisons.oracle.lockstep import LockstepResult, lockstep
from comparisons.run.engines import make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec
from tests.comparisons.lockstep_cases import RaisesAtStep
from tests.tiers import every

# 41 rows in batches of 4: ten steps of one shape, then one of a single row, per epoch (42,
# and two rows, with batch normalization, which needs two).
LONGER = {"synthetic_rows": 41, "batch_size": 4}
CHUNKS = [1, 3, None]  # one at a time, ragged chunks, the default


def spec_for(changes: dict) -> RunSpec:
    longer = {**LONGER, "synthetic_rows": 42} if changes.get("batch_norm") else LONGER
    return RunSpec().replace(**{**changes, **longer, "engines": ("scratch", "torch")})


def everything(result: LockstepResult) -> str:
    """All a run reports, as text (NaN and inf included), to compare two runs exactly."""

    def plain(value):
        if isinstance(value, np.ndarray):
            return value.tolist()
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        return str(value)

    findings = {
        "verdict": result.verdict,
        "steps_run": result.steps_run,
        "divergent_steps": result.divergent_steps,
        "first_divergence": result.first_divergence and result.first_divergence.as_dict(),
        "diverged": result.diverged and result.diverged.as_dict(),
        "failure": result.failure and result.failure.as_dict(),
        "per_step": result.per_step,
        "per_tensor": {n: table.items() for n, table in result.per_tensor.items()},
        "final_params": result.final_params,
        "first_step": {n: sorted(t) for n, t in result.first_step_traces.items()},
    }
    return json.dumps(findings, default=plain, sort_keys=True)


def runs(spec: RunSpec, stop_at_first: bool, references=None) -> list[str]:
    inputs = build_inputs(spec)
    out = []
    for chunk in CHUNKS:
        refs = references() if references else {"torch": make_torch(inputs)}
        out.append(everything(lockstep(inputs, refs, stop_at_first=stop_at_first, chunk=chunk)))
    return out


def make_torch(inputs):
    return make_engine("torch", inputs.mlp, inputs.optimizer, inputs.spec.dtype)


@pytest.mark.torch
@pytest.mark.parametrize("stop_at_first", [True, False], ids=["stop-at-first", "whole-run"])
def test_a_sound_run_reports_the_same_whatever_the_chunks(stop_at_first):
    spec = spec_for({"dataset": "synthetic", "optimizer": "adam", "lr": 0.01, "epochs": 2})
    one, ragged, default = runs(spec, stop_at_first)
    assert '"verdict": "agree"' in one and one == ragged == default


# (scratch's faults: the engine-side ones are engines of their own, run by test_faults.py)
FAULTS_OF_SCRATCH = [f for f in FAULTS if not f.equivalent and not f.engine]
FAULT_PARAMS = every(8, FAULTS_OF_SCRATCH, name=lambda f: f.name)


@pytest.mark.torch
@pytest.mark.parametrize("fault", FAULT_PARAMS)
@pytest.mark.parametrize("stop_at_first", [True, False], ids=["stop-at-first", "whole-run"])
def test_a_fault_reports_the_same_whatever_the_chunks(fault, stop_at_first):
    with fault.patch():
        one, ragged, default = runs(spec_for(fault.run_spec()), stop_at_first)
    assert '"verdict": "agree"' not in one, "the fault must show under this spec"
    assert one == ragged == default


@pytest.mark.torch
def test_a_reference_that_raises_mid_chunk_ends_the_run_at_that_step():
    spec = spec_for({"dataset": "synthetic", "epochs": 2})
    inputs = build_inputs(spec)
    results = runs(spec, False, lambda: {"torch": RaisesAtStep(make_torch(inputs), at=5)})
    assert results[0] == results[1] == results[2]
    finding = json.loads(results[0])
    assert finding["verdict"] == "error" and finding["failure"]["step"] == 5
    assert finding["steps_run"] == 6


def test_a_chunk_holds_fewer_steps_when_a_steps_traces_are_large():
    def chunk(hidden, batch):
        spec = RunSpec().replace(dataset="synthetic", hidden=hidden, batch_size=batch)
        return chunk_steps(build_inputs(spec))

    assert chunk((8, 4), 50) == chunks_module.CHUNK_STEPS
    assert 1 < chunk((64, 64), 50) < chunks_module.CHUNK_STEPS
    assert chunk((1024, 1024), 1000) == 1
