"""The plain loop (``oracle/plain.py``) is the lockstep rule's specification; the chunked
executor (``oracle/chunked.py``: chunks, stacked allowances, run-ahead, worker processes) must
report exactly what it reports. Each case runs through both and compares report.json, all of
it but the timings: the default job (one epoch), every fault of the catalogue (stopping at
the first divergence and not), a diverged run, an engine under test and a reference that
raise, dropout, batch normalization, and a plugged engine under test."""

from __future__ import annotations

import json

import pytest

from comparisons import cli
from comparisons.faults.catalogue import FAULTS, FAULTS_BY_NAME
from comparisons.modes import lockstep as lockstep_mode
from comparisons.modes.lockstep import run_lockstep
from comparisons.run.engines import make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec
from comparisons.run.under_test import SCRATCH, load_under_test, under_test_of
from tests.comparisons import broken_engines
from tests.comparisons.lockstep_cases import RaisesAtStep
from tests.tiers import every

# 41 rows in batches of 4: ten steps of one shape, then one of a single row, per epoch (42
# with batch normalization, which needs two rows), so that chunks end early and ragged.
LONGER = {"dataset": "synthetic", "synthetic_rows": 41, "batch_size": 4, "epochs": 2}


def spec_for(changes: dict) -> RunSpec:
    rows = 42 if changes.get("batch_norm") else 41
    return RunSpec().replace(**{**LONGER, "synthetic_rows": rows, **changes})


def without_timings(report: dict) -> str:
    """The report but for when it was made and how long it took."""
    report = {k: v for k, v in report.items() if k not in ("timings", "created")}
    return json.dumps(report, sort_keys=True, default=str)


def both(spec: RunSpec, stop_at_first=False, under_test=SCRATCH) -> tuple[str, str]:
    """The report of the plain loop and of the chunked executor (chunks of 3, so that a run
    has several), each without its timings."""
    inputs = build_inputs(spec)
    out = []
    for plain in (True, False):
        report = run_lockstep(
            inputs, under_test=under_test, plain=plain, stop_at_first=stop_at_first
        )
        out.append(without_timings(report))
    return out[0], out[1]


@pytest.fixture
def chunks_of_three(monkeypatch):
    from comparisons.oracle import chunks

    monkeypatch.setattr(chunks, "CHUNK_STEPS", 3)


def cli_report(tmp_path, name: str, *args: str) -> str:
    out = tmp_path / name
    cli.main(["run", *args, "--out", str(out), "--quiet"])
    return without_timings(json.loads((out / "report.json").read_text(encoding="utf-8")))


@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.slow
def test_the_default_job_reports_the_same_through_both(occupancy_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(occupancy_dir))
    plain = cli_report(tmp_path, "plain", "--set", "epochs=1", "--plain")
    fast = cli_report(tmp_path, "fast", "--set", "epochs=1", "--jobs", "3")
    assert '"verdict": "agree"' in plain
    assert plain == fast


@pytest.mark.torch
def test_a_small_job_with_a_worker_reports_the_same_through_both(tmp_path):
    args = ["--set", "dataset=synthetic", "--set", "epochs=2", "--engines", "scratch,torch"]
    plain = cli_report(tmp_path, "plain", *args, "--plain")
    fast = cli_report(tmp_path, "fast", *args, "--jobs", "2")
    assert '"verdict": "agree"' in plain and plain == fast


# (scratch's faults: the engine-side ones are engines of their own, below)
FAULTS_OF_SCRATCH = [f for f in FAULTS if not f.equivalent and not f.engine]
FAULT_PARAMS = every(12, FAULTS_OF_SCRATCH, name=lambda f: f.name)


@pytest.mark.torch
@pytest.mark.parametrize("fault", FAULT_PARAMS)
@pytest.mark.parametrize("stop_at_first", [True, False], ids=["stop-at-first", "whole-run"])
def test_every_fault_reports_the_same_through_both(chunks_of_three, fault, stop_at_first):
    spec = spec_for({**fault.run_spec(), "engines": ("scratch", "torch")})
    with fault.patch():
        plain, chunked = both(spec, stop_at_first)
    assert '"verdict": "agree"' not in plain, "the fault must show under this spec"
    assert plain == chunked


@pytest.mark.torch
@pytest.mark.parametrize(
    "changes, verdict",
    [
        ({"lr": float("inf")}, "diverged"),
        ({"dropout": 0.3, "hidden": (6, 5)}, "agree"),
        ({"batch_norm": True, "hidden": (6, 5)}, "agree"),
        ({"dropout": 0.2, "batch_norm": True, "optimizer": "adam", "lr": 0.01}, "agree"),
    ],
    ids=["diverged", "dropout", "batch-norm", "dropout-batch-norm-adam"],
)
def test_diverged_dropout_and_batch_norm_report_the_same_through_both(
    chunks_of_three, changes, verdict
):
    plain, chunked = both(spec_for({**changes, "engines": ("scratch", "torch")}))
    assert f'"verdict": "{verdict}"' in plain and plain == chunked


@pytest.mark.torch
def test_an_engine_under_test_that_raises_reports_the_same_through_both(chunks_of_three):
    spec = spec_for({"hidden": (6, 5), "batch_size": 5, "engines": ("scratch", "torch")})
    with FAULTS_BY_NAME["bias-gradient-wrong-axis"].patch():
        plain, chunked = both(spec)
    assert '"verdict": "error"' in plain and plain == chunked


@pytest.mark.torch
def test_a_reference_that_raises_reports_the_same_through_both(chunks_of_three, monkeypatch):
    def references(inputs, device="cpu", workers=None):
        torch = make_engine("torch", inputs.mlp, inputs.optimizer, inputs.spec.dtype)
        return {"torch": RaisesAtStep(torch, at=5)}

    monkeypatch.setattr(lockstep_mode, "make_references", references)
    plain, chunked = both(spec_for({"engines": ("scratch", "torch")}))
    assert '"verdict": "error"' in plain and plain == chunked


@pytest.mark.torch
def test_a_plugged_engine_under_test_reports_the_same_through_both(chunks_of_three):
    under_test = load_under_test("examples.layered_mlp:make_engine")
    plain, chunked = both(spec_for({"engines": ("scratch", "torch")}), under_test=under_test)
    assert '"verdict": "agree"' in plain and plain == chunked


ENGINE_FAULTS = [f for f in FAULTS if f.engine]


@pytest.mark.torch
@pytest.mark.parametrize("fault", ENGINE_FAULTS, ids=[f.name for f in ENGINE_FAULTS])
@pytest.mark.parametrize("stop_at_first", [True, False], ids=["stop-at-first", "whole-run"])
def test_a_state_or_evaluation_kept_wrong_reports_the_same_through_both(
    chunks_of_three, fault, stop_at_first
):
    """What an engine keeps but leaves out of its trace (a buffer, the step count) is judged
    after every step, and the final evaluation after the last, by both paths alike."""
    spec = spec_for({**fault.run_spec(), "engines": ("scratch", "torch")})
    plain, chunked = both(spec, stop_at_first, under_test=load_under_test(fault.engine))
    assert '"verdict": "disagree"' in plain and fault.expected_tensor in plain
    assert plain == chunked


@pytest.mark.torch
@pytest.mark.parametrize(
    "engine, changes, stopped",
    [
        (
            broken_engines.OutputBiasSummedOverUnits,
            {"loss": "bce_logits", "output": "identity", "synthetic_classes": 2},
            "cannot be loaded",
        ),
        (broken_engines.DisagreesThenDiverges, {}, ""),
    ],
    ids=["state-misshapen-mid-run", "disagrees-then-diverges"],
)
def test_a_run_that_ends_mid_chunk_reports_the_same_through_both(
    chunks_of_three, engine, changes, stopped
):
    """A state that cannot be loaded into the references, and a step where every engine went
    non-finite after earlier disagreements, end the run at that step in both paths."""
    plain, chunked = both(
        spec_for({**changes, "engines": ("scratch", "torch")}), under_test=under_test_of(engine)
    )
    report = json.loads(plain)
    assert report["verdict"] == "disagree"
    assert report["steps_verified"] < len(build_inputs(spec_for(changes)).schedule.steps)
    assert stopped in report["stopped"]
    assert plain == chunked
