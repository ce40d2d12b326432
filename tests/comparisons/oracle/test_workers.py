"""References in worker processes (comparisons/oracle/workers.py) change nothing a run
reports: a reference replaying in a worker gives the verdict, steps, divergence, worst errors,
per-step summaries and final parameters it gives in process, whether the run goes whole or
stops early, whether the oracle runs one chunk ahead or many; a reference that raises in its
worker ends the run where it does in process; a worker that dies is an error of its
reference, not a hang; and ``run --jobs`` writes the report ``--jobs 1`` writes."""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import pytest

from comparisons import cli
from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.oracle import chunks
from comparisons.oracle.lockstep import lockstep
from comparisons.oracle.workers import Worker, in_workers, reference_workers
from comparisons.run.engines import make_engine, make_reference
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec
from tests.comparisons.oracle.test_lockstep_chunks import RaisesAtStep, everything
from tests.comparisons.test_cli import VOLATILE

pytestmark = pytest.mark.torch

SPEC = RunSpec().replace(
    dataset="synthetic",
    synthetic_rows=41,
    batch_size=4,
    optimizer="adam",
    lr=0.01,
    epochs=2,
    engines=("scratch", "torch"),
)


def in_process(inputs):
    return {"torch": make_engine("torch", inputs.mlp, inputs.optimizer, inputs.spec.dtype)}


def settings(inputs):
    return ("torch", inputs.mlp, inputs.optimizer, inputs.spec.dtype, "cpu")


@pytest.fixture(scope="module")
def worker():
    """One PyTorch worker for the module's runs of SPEC (each step loads its own state, so a
    worker serves run after run)."""
    with reference_workers(["torch"], jobs=2) as started:
        started["torch"].build(make_reference, *settings(build_inputs(SPEC)))
        yield started["torch"]


CASES = {
    "sound": (None, False),
    "fault-whole-run": ("missing-1/m", False),
    "fault-stop-at-first": ("sigmoid-derivative-sign", True),
}


@pytest.mark.slow  # a worker process: ~3 s of PyTorch's import each
@pytest.mark.parametrize("one_ahead", [False, True], ids=["many-ahead", "one-ahead"])
@pytest.mark.parametrize("chunk", [1, None], ids=["chunks-of-1", "default-chunks"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_reference_in_a_worker_reports_what_it_does_in_process(
    worker, case, chunk, one_ahead, monkeypatch
):
    fault, stop_at_first = CASES[case]
    if one_ahead:
        monkeypatch.setattr(chunks, "AHEAD_BYTES", 1)
    inputs = build_inputs(SPEC)
    patch = FAULTS_BY_NAME[fault].patch() if fault else contextlib.nullcontext()
    with np.errstate(all="ignore"), patch:
        here = lockstep(inputs, in_process(inputs), stop_at_first=stop_at_first, chunk=chunk)
        apart = lockstep(inputs, {"torch": worker}, stop_at_first=stop_at_first, chunk=chunk)
    assert (here.verdict == "agree") == (fault is None)
    assert everything(apart) == everything(here)


@pytest.mark.slow  # a worker process: ~3 s of PyTorch's import each
def test_a_diverged_run_stops_at_the_same_step_with_scratchs_state_then():
    inputs = build_inputs(SPEC.replace(lr=1e6, optimizer="sgd", activation="relu", loss="mse"))
    here = lockstep(inputs, in_process(inputs))
    with reference_workers(["torch"], jobs=2) as started:
        started["torch"].build(make_reference, *settings(inputs))
        apart = lockstep(inputs, started)
    assert here.verdict == "diverged" and here.steps_run < len(inputs.schedule)
    assert everything(apart) == everything(here)


def raising_torch(at: int, *settings):
    """PyTorch that raises at its ``at``-th step (built in the worker)."""
    return RaisesAtStep(make_reference(*settings), at)


def dying_torch(at: int, *settings):
    """PyTorch whose process ends at its ``at``-th step, as a crash would end it."""
    engine = RaisesAtStep(make_reference(*settings), at)
    step = engine.step

    def die_at(X, Y, **given):
        if engine.steps == at:
            os._exit(3)
        return step(X, Y, **given)

    engine.step = die_at
    return engine


@pytest.mark.slow  # a worker process: ~3 s of PyTorch's import each
def test_a_reference_that_raises_in_its_worker_ends_the_run_where_it_does_in_process():
    inputs = build_inputs(SPEC)
    here = lockstep(inputs, {"torch": RaisesAtStep(in_process(inputs)["torch"], 13)})
    with reference_workers(["torch"], jobs=2) as started:
        started["torch"].build(raising_torch, 13, *settings(inputs))
        apart = lockstep(inputs, started)
    assert here.verdict == "error" and here.failure.step == 13
    assert everything(apart) == everything(here)


@pytest.mark.slow  # a worker process: ~3 s of PyTorch's import each
def test_a_worker_that_dies_is_an_error_of_its_reference_not_a_hang():
    inputs = build_inputs(SPEC)
    with reference_workers(["torch"], jobs=2) as started:
        started["torch"].build(dying_torch, 13, *settings(inputs))
        result = lockstep(inputs, started)
    failure = result.failure
    assert result.verdict == "error"
    assert (failure.engine, failure.error) == ("torch", "WorkerDied")
    assert "ended with exit status 3" in failure.message
    assert failure.step <= 13 < result.steps_run + 32  # the chunk it died in


@pytest.mark.slow  # a worker process: ~3 s of PyTorch's import each
def test_an_error_building_the_engine_in_its_worker_is_raised_here():
    inputs = build_inputs(SPEC)
    worker = Worker("torch", "reference.torch_engine")
    try:
        worker.build(make_reference, "torch", inputs.mlp, inputs.optimizer, "float16", "cpu")
        with pytest.raises(ValueError, match="float16"):
            lockstep(inputs, {"torch": worker})
    finally:
        worker.close()


def test_workers_are_no_more_than_the_jobs_allow_pytorch_first():
    assert in_workers(["scratch", "torch", "jax"], 1) == []
    assert in_workers(["scratch", "jax", "torch"], 2) == ["torch"]  # its import is the longest
    assert in_workers(["scratch", "jax", "torch"], 16) == ["torch", "jax"]
    assert in_workers(["scratch", "jax"], 2) == ["jax"]


def _report(out) -> dict:
    report = json.loads((out / "report.json").read_text())
    return {k: v for k, v in report.items() if k not in VOLATILE}


SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=41", "--set", "batch_size=4"]


@pytest.mark.slow  # a worker process: ~3 s of PyTorch's import each
def test_run_with_jobs_writes_the_report_one_process_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    base = ["run", *SMALL, "--engines", "scratch,torch", "--quiet"]
    assert cli.main([*base, "--jobs", "1", "--out", str(one)]) == 0
    assert cli.main([*base, "--jobs", "2", "--out", str(two)]) == 0
    assert _report(one) == _report(two)
    env = json.loads((two / "report.json").read_text())["environment"]
    assert env["torch"]["num_threads"] == 1  # the worker's own torch, as it ran


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_bad_jobs_value_is_one_line_exit_2(value, capsys, tmp_path):
    code = cli.main(["run", *SMALL, "--jobs", value, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--jobs" in err[0]
