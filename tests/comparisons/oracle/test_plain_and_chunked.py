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
from comparisons.run.under_test import SCRATCH, load_under_test
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


FAULT_PARAMS = every(12, [f for f in FAULTS if not f.equivalent], name=lambda f: f.name)


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


class RaisesAtStep:
    """A reference that raises at its ``at``-th step and is PyTorch's otherwise."""

    def __init__(self, engine, at: int):
        self.engine, self.at, self.steps, self.name = engine, at, 0, "torch"

    def set_state(self, params, opt_state):
        self.engine.set_state(params, opt_state)

    def step(self, X, Y):
        self.steps += 1
        if self.steps == self.at + 1:
            raise RuntimeError("a reference that fails mid-run")
        return self.engine.step(X, Y)

    def predict(self, X):
        return self.engine.predict(X)

    def state(self):
        return self.engine.state()


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
