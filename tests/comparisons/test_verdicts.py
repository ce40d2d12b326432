"""Every run ends in a verdict, and no verdict is AGREE on something that was not verified:
non-finite values, exceptions inside a step, in-place writes, state that is carried but not
compared, extra batches, and sums that cancel (each a hole the oracle once had)."""

from __future__ import annotations

import json

import pytest

import scratch.network
from comparisons import cli
from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.faults.patching import edited_function
from comparisons.oracle.arbitration import _decide
from comparisons.oracle.lockstep import lockstep
from comparisons.run.engines import make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec

SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=12", "--set", "epochs=1"]


def run(tmp_path, *args, command="run", engines="scratch"):
    out = tmp_path / "out"
    code = cli.main([command, *SMALL, "--engines", engines, "--out", str(out), "--quiet", *args])
    report = json.loads((out / "report.json").read_text(encoding="utf-8")) if out.exists() else {}
    return code, report


@pytest.mark.parametrize("command", ["run", "drift", "gradcheck"])
def test_a_run_that_goes_non_finite_is_diverged_with_exit_3_never_agree(tmp_path, capsys, command):
    code, report = run(tmp_path, "--set", "lr=inf", "--set", "batch_size=4", command=command)
    out = capsys.readouterr().out
    assert code == 3 and report["verdict"] == "diverged"
    assert out.startswith("DIVERGED: training diverged at step ")
    assert "AGREE" not in out


def test_the_diverged_verdict_names_the_step_and_tensor_and_gives_no_accuracies(tmp_path):
    _, report = run(tmp_path, "--set", "lr=inf")
    assert report["diverged"]["step"] == 0 and report["diverged"]["tensor"] == "ΔW1"
    assert report["metrics"] is None and "diverged at step 0" in report["metrics_note"]


@pytest.mark.torch
@pytest.mark.jax
def test_all_engines_non_finite_together_is_diverged_against_both_references(tmp_path):
    code, report = run(tmp_path, "--set", "lr=inf", engines="scratch,torch,jax")
    assert code == 3 and report["diverged"]["engines"] == ["scratch", "torch", "jax"]


def test_nan_against_inf_never_blames_a_reference_for_a_convention():
    # scratch inf, torch NaN, jax inf: no pair agrees (no non-finite value ever does), so
    # there is no majority to blame anyone with.
    agree = {"scratch vs torch": False, "scratch vs jax": False, "torch vs jax": False}
    assert _decide("Z2", agree, "scratch", ["torch", "jax"], has_fd=False)["wrong"] == "undecided"


def test_an_exception_inside_scratchs_step_is_an_error_verdict_naming_the_bug(tmp_path, capsys):
    with FAULTS_BY_NAME["bias-gradient-wrong-axis"].patch():
        code, report = run(tmp_path, "--set", "hidden=[6,5]", "--set", "batch_size=5")
    assert code == 1 and report["verdict"] == "error"
    error = report["error"]
    assert error["engine"] == "scratch" and error["error"] == "ValueError"
    assert error["where"].startswith("scratch/optimizers.py:") and error["step"] == 0
    assert "db3" in error["computed"] and "W1" not in error["computed"]
    out = capsys.readouterr().out
    assert out.startswith("ERROR: scratch raised ValueError at step 0")
    assert "tensors computed before the exception: Z1, A1" in out


@pytest.mark.torch
def test_the_tensors_computed_before_the_exception_are_compared_and_point_at_the_bug(tmp_path):
    with FAULTS_BY_NAME["bias-gradient-wrong-axis"].patch():
        code, report = run(
            tmp_path, "--set", "hidden=[6,5]", "--set", "batch_size=5", engines="scratch,torch"
        )
    assert code == 1
    assert report["first_divergence"]["tensor"] == "db3"
    assert report["first_divergence"]["look_at"] == "scratch/network.py:bias_grad"


def test_a_bug_in_the_oracle_itself_is_exit_4_with_its_traceback(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in the oracle")

    monkeypatch.setattr("comparisons.modes.lockstep.lockstep", broken)
    code, report = run(tmp_path)
    err = capsys.readouterr().err
    assert code == 4 and not report
    assert "ZeroDivisionError: a bug in the oracle" in err and "internal error" in err


def first_divergence(fault_name: str, engines=("torch",), **spec):
    fault = FAULTS_BY_NAME[fault_name]
    inputs = build_inputs(RunSpec().replace(**fault.run_spec(), **spec))
    refs = {e: make_engine(e, inputs.mlp, inputs.optimizer, inputs.spec.dtype) for e in engines}
    with fault.patch():
        result = lockstep(inputs, refs, stop_at_first=True)
    return result.first_divergence


@pytest.mark.torch
def test_an_in_place_write_is_reported_as_such_before_any_tensor_is_compared():
    d = first_divergence("update-in-place")
    assert (d.step, d.comparison.tensor) == (0, "W1")
    assert d.comparison.problem == "scratch modified W1 in place during step 0"
    assert d.upstream_agreed == [] and d.look_at.startswith("scratch/optimizers.py:sgd")


@pytest.mark.torch
def test_an_adam_step_count_that_is_not_stored_is_caught_at_t():
    d = first_divergence("adam-step-count-not-advanced")
    assert (d.step, d.comparison.tensor, d.comparison.kind) == (0, "t", "counter")


def test_extra_batches_are_caught_before_the_epoch_runs():
    d = first_divergence("extra-batch", engines=())
    assert (d.step, d.comparison.tensor) == (0, "rows")
    assert "scratch made 4 batches in epoch 0; the schedule has 3" in d.comparison.problem


def test_a_reference_that_writes_into_its_input_raises_instead_of_corrupting_the_next(tmp_path):
    class Writer:
        """A reference engine that writes into the parameters it is given."""

        name, package = "writer", "tests"

        def set_state(self, params, state):
            params["W1"][0, 0] = 0.0

        def step(self, X, Y):  # pragma: no cover - never reached
            raise AssertionError

    inputs = build_inputs(RunSpec().replace(dataset="synthetic", synthetic_rows=12, epochs=1))
    result = lockstep(inputs, {"writer": Writer()})
    assert result.verdict == "error" and result.failure.engine == "writer"
    assert "read-only" in result.failure.message


@pytest.mark.torch
@pytest.mark.jax
def test_a_float32_bias_gradient_that_cancels_is_not_a_false_disagreement(tmp_path):
    """The issue's case: db3 is a sum of large terms cancelling to ~6e-7 in float32; its
    allowance follows the terms' size, not the result's."""
    args = ["--set", "synthetic_rows=60", "--set", "batch_size=10", "--set", "dtype=float32"]
    code, report = run(tmp_path, *args, "--set", "init_gain=100.0", engines="scratch,torch,jax")
    assert code == 0, report.get("first_divergence")


@pytest.mark.torch
def test_a_sum_that_does_not_cancel_is_held_to_a_few_ulps():
    """Z1 = X @ W1 with no cancellation: moving it by 1e-13 of itself (~500 ulps) is caught,
    where the old flat rtol of 1e-10 let it pass."""
    inputs = build_inputs(RunSpec().replace(dataset="synthetic", synthetic_rows=12, epochs=1))
    engine = make_engine("torch", inputs.mlp, inputs.optimizer, "float64")
    nudged = "(A_prev @ W + b) * (1 + 1e-13)"
    with edited_function(scratch.network, "linear", "A_prev @ W + b", nudged):
        result = lockstep(inputs, {"torch": engine}, stop_at_first=True)
    assert not result.agree and result.first_divergence.comparison.tensor == "Z1"


@pytest.mark.realdata
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize(
    ("args", "step", "tensor"),
    [
        (["--set", "lr=inf"], 0, "ΔW1"),
        (["--set", "lr=1e6", "--set", "activation=tanh", "--set", "loss=mse"], 23, "loss"),
    ],
    ids=["lr-inf", "lr-1e6-tanh-mse"],
)
def test_the_issues_non_finite_occupancy_runs_are_diverged(
    occupancy_dir, tmp_path, monkeypatch, args, step, tensor
):
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(occupancy_dir))
    out = tmp_path / "out"
    code = cli.main(["run", *args, "--set", "epochs=1", "--out", str(out), "--quiet"])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert code == 3 and report["verdict"] == "diverged"
    assert (report["diverged"]["step"], report["diverged"]["tensor"]) == (step, tensor)
