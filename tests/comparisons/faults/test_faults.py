"""The fault catalogue: every fault is caught and localized, the arbitration blames the
right engine (scratch for scratch's faults, a reference for a misconfigured reference), and
the equivalent fault provably changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from comparisons import cli
from comparisons.faults.catalogue import FAULTS, FAULTS_BY_NAME
from comparisons.faults.runner import run_fault
from comparisons.oracle.arbitration import arbitrate
from comparisons.oracle.lockstep import lockstep
from comparisons.run.engines import ScratchEngine, initial_state, make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec
from comparisons.run.under_test import load_under_test
from tests.comparisons.lockstep_cases import skip_unless_sound

REAL_FAULTS = [f for f in FAULTS if not f.equivalent]


def test_the_catalogue_covers_at_least_twenty_faults_with_unique_names():
    assert len(REAL_FAULTS) >= 20
    assert len(FAULTS_BY_NAME) == len(FAULTS)


# Slow: every fault against both references, arbitration included. The quick tier runs
# `check` on every fault instead (tests/comparisons/modes/test_check.py): caught, and localized.
@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("fault", REAL_FAULTS, ids=[f.name for f in REAL_FAULTS])
def test_every_fault_is_caught_localized_and_blamed_on_the_broken_engine(fault):
    result = run_fault(fault, ("torch", "jax"))
    skip_unless_sound(result["sound_run_agrees"])
    assert result["caught"], f"{fault.name} was not caught"
    assert result["first_divergence"]["tensor"] == fault.expected_tensor
    broken = load_under_test(fault.engine).name if fault.engine else "scratch"
    assert result["arbitration"]["wrong"] == broken, result["arbitration"]["explanation"]


ITEM_25 = [
    "momentum-l2-after-buffer",
    "sgd-step-count-not-advanced",
    "step-count-frozen",
    "evaluation-batch-statistics",
    "evaluation-dropout-on",
]


@pytest.mark.torch
@pytest.mark.parametrize("name", ITEM_25)
def test_state_count_and_evaluation_faults_are_caught_and_localized(name):
    """What an engine keeps but does not report, the step count with an optimizer that keeps
    none, and the final evaluation: each caught at the tensor it touches."""
    fault = FAULTS_BY_NAME[name]
    result = run_fault(fault, ("torch",))
    assert result["sound_run_agrees"]
    assert result["caught"] and result["localized"], result["first_divergence"]


@pytest.mark.parametrize(
    "fault", [f for f in FAULTS if f.equivalent], ids=[f.name for f in FAULTS if f.equivalent]
)
def test_an_equivalent_fault_changes_no_bit_of_any_step(fault):
    """The proof that it is equivalent: every tensor of every step is bitwise the same."""
    problem = build_inputs(RunSpec().replace(**fault.run_spec(), engines=("scratch",)))
    X, Y = problem.train

    def run():
        engine = ScratchEngine(problem.mlp, problem.optimizer, problem.spec.dtype)
        engine.set_state(problem.params0, initial_state(problem.optimizer, problem.params0))
        return [engine.step(X[s.rows], Y[s.rows]) for s in problem.schedule.steps]

    sound = run()
    with fault.patch():
        patched = run()
    for ours, theirs in zip(sound, patched, strict=True):
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_array_equal(theirs[name], ours[name], err_msg=name)


def divergence_with(reference_kwargs: dict, broken: str):
    """A lockstep run where the engine ``broken`` is built with other settings than scratch."""
    spec = RunSpec().replace(
        dataset="synthetic", synthetic_rows=12, epochs=1, batch_size=5, optimizer="sgd", lr=0.1
    )
    problem = build_inputs(spec)
    engines = {}
    for name in ("torch", "jax"):
        optimizer = problem.optimizer
        if name == broken:
            optimizer = type(optimizer)(**{**vars(optimizer), **reference_kwargs})
        engines[name] = make_engine(name, problem.mlp, optimizer, spec.dtype)
    result = lockstep(problem, engines, stop_at_first=True)
    assert not result.agree
    return arbitrate(problem, result.first_divergence, result.divergent_step)


@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("broken", ["torch", "jax"])
def test_a_misconfigured_reference_is_blamed_not_scratch(broken):
    verdict = divergence_with({"lr": 0.2}, broken)  # a reference with twice the step size
    assert verdict["wrong"] == broken
    other = {"torch": "jax", "jax": "torch"}[broken]
    assert f"{broken} is wrong, scratch and {other} agree" in verdict["explanation"]


@pytest.mark.torch
@pytest.mark.jax
def test_a_reference_with_another_loss_reduction_is_blamed(monkeypatch):
    import torch

    problem = build_inputs(
        RunSpec().replace(dataset="synthetic", synthetic_rows=12, epochs=1, batch_size=5)
    )
    engines = {
        name: make_engine(name, problem.mlp, problem.optimizer, "float64")
        for name in ("torch", "jax")
    }
    engines["torch"].loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
    result = lockstep(problem, engines, stop_at_first=True)
    assert result.first_divergence.comparison.tensor == "loss"
    verdict = arbitrate(problem, result.first_divergence, result.divergent_step)
    assert verdict["wrong"] == "torch"


@pytest.mark.torch
def test_with_one_reference_and_finite_differences_scratch_is_still_blamed():
    fault = FAULTS_BY_NAME["bias-gradient-one-row"]
    result = run_fault(fault, ("torch",))
    assert result["arbitration"]["wrong"] == "scratch"
    assert "torch and finite differences agree" in result["arbitration"]["explanation"]


@pytest.mark.torch
def test_the_faults_command_writes_its_report(tmp_path, monkeypatch, capsys):
    subset = tuple(FAULTS_BY_NAME[n] for n in ("missing-1/m", "momentum-first-step-from-gradient"))
    monkeypatch.setattr("comparisons.faults.runner.FAULTS", subset)
    monkeypatch.setattr("comparisons.cli.FAULTS", subset)
    out = tmp_path / "m"
    code = cli.main(["faults", "--engines", "torch", "--out", str(out), "--quiet"])
    report = json.loads((out / "faults.json").read_text(encoding="utf-8"))
    assert code == 0 and report["summary"]["all_caught"]
    assert [f["name"] for f in report["faults"]] == [f.name for f in subset]
    assert "missing-1/m" in (out / "faults.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out.startswith("ALL CAUGHT: 1 of 1 faults caught")


def test_faults_list_prints_the_catalogue_page_and_runs_nothing(capsys):
    from comparisons import cli
    from comparisons.faults.catalogue import FAULTS

    assert cli.main(["faults", "--list"]) == 0
    page = capsys.readouterr().out
    for fault in FAULTS:
        assert f"| {fault.name} | " in page
    real = sum(not f.equivalent for f in FAULTS)
    assert f"**{real} faults in " in page
