"""The final evaluation is judged: every split's outputs, loss and accuracy, each engine loaded
with the engine under test's final state, are compared and are part of the verdict.

Issue: an evaluation that normalized with the batch's statistics, or left dropout on, agreed
in ``run`` while its own metrics table showed the difference.
"""

from __future__ import annotations

import pytest

from comparisons.modes.check import run_case
from comparisons.modes.drift import run_drift
from comparisons.modes.lockstep import run_lockstep
from comparisons.oracle.evaluation import add_evaluation, judge_evaluation
from comparisons.oracle.lockstep import lockstep
from comparisons.report.text import verdict_line
from comparisons.run.coverage import CASES
from comparisons.run.engines import ScratchEngine
from comparisons.run.inputs import build_inputs
from comparisons.run.recorded import BUNDLED, load_recorded
from comparisons.run.under_test import SCRATCH, under_test_of
from tests.comparisons import broken_engines
from tests.comparisons.lockstep_cases import synthetic_spec

BROKEN = [
    pytest.param(broken_engines.BatchStatisticsInEvaluation, {"batch_norm": True}, id="bn"),
    pytest.param(broken_engines.DropoutInEvaluation, {"dropout": 0.5}, id="dropout"),
]


def judged(inputs, under_test):
    refs = {"reference": ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)}
    result = lockstep(inputs, refs, under_test=under_test)
    evaluation = judge_evaluation(inputs, under_test, result.final_params, result.final_state, refs)
    add_evaluation(result, evaluation, inputs)
    return result, evaluation


@pytest.mark.parametrize(("cls", "changes"), BROKEN)
def test_a_wrong_evaluation_disagrees_at_the_outputs_of_the_first_split(cls, changes):
    inputs = build_inputs(synthetic_spec(**changes))
    result, _ = judged(inputs, under_test_of(cls))
    assert result.divergent_steps == 0  # every step agreed: only the evaluation differs
    d = result.first_divergence
    assert result.verdict == "disagree"
    split = next(iter(inputs.splits))
    assert d.comparison.tensor == f"A3 ({split}, evaluation)"
    assert d.step == inputs.schedule.steps[-1].index and d.look_at.startswith("predict")


@pytest.mark.parametrize("changes", [{"batch_norm": True}, {"dropout": 0.5}, {}])
def test_a_right_evaluation_agrees_on_every_split(changes):
    inputs = build_inputs(synthetic_spec(**changes))
    result, evaluation = judged(inputs, SCRATCH)
    assert result.verdict == "agree"
    names = evaluation.names()
    assert names == [
        f"{what} ({split}, evaluation)"
        for split in inputs.splits
        for what in ("A3", "loss", "accuracy")
    ]


@pytest.mark.torch
@pytest.mark.parametrize(("cls", "changes"), BROKEN)
def test_run_says_disagree_on_a_wrong_evaluation_naming_it(cls, changes):
    inputs = build_inputs(synthetic_spec(engines=("scratch", "torch"), **changes))
    report = run_lockstep(inputs, under_test=under_test_of(cls))
    assert report["verdict"] == "disagree"
    assert report["first_divergence"]["tensor"].endswith(", evaluation)")
    assert "the final evaluation does not" in verdict_line(report)
    assert report["arbitration"]["wrong"] == "undecided"  # one reference: no evidence


@pytest.mark.torch
@pytest.mark.jax
def test_run_with_two_references_blames_the_engine_for_a_wrong_evaluation():
    inputs = build_inputs(synthetic_spec(engines=("scratch", "torch", "jax"), batch_norm=True))
    under_test = under_test_of(broken_engines.BatchStatisticsInEvaluation)
    report = run_lockstep(inputs, under_test=under_test)
    assert report["verdict"] == "disagree"
    assert report["arbitration"]["wrong"] == under_test.name != "scratch"


@pytest.mark.torch
def test_drift_says_disagree_on_a_wrong_evaluation():
    inputs = build_inputs(synthetic_spec(engines=("scratch", "torch"), batch_norm=True))
    report = run_drift(inputs, under_test=under_test_of(broken_engines.BatchStatisticsInEvaluation))
    assert report["verdict"] == "disagree"
    assert report["first_divergence"]["tensor"].endswith(", evaluation)")


@pytest.mark.torch
def test_a_check_case_with_batch_normalization_judges_the_evaluation():
    case = next(c for c in CASES if c.changes.get("batch_norm"))
    entry = run_case(case, ("torch",), under_test_of(broken_engines.BatchStatisticsInEvaluation))
    assert entry["verdict"] == "disagree"
    assert entry["first_divergence"]["tensor"].endswith(", evaluation)")


def test_check_against_the_recorded_set_judges_the_evaluation():
    """The recorded set holds every reference's outputs from the final state."""
    recorded = load_recorded(BUNDLED)
    case = next(c for c in CASES if c.changes.get("batch_norm"))
    under_test = under_test_of(broken_engines.BatchStatisticsInEvaluation)
    entry = run_case(case, recorded.references, under_test, recorded)
    assert entry["verdict"] == "disagree"
    assert entry["first_divergence"]["tensor"].endswith(", evaluation)")
    assert run_case(case, recorded.references, SCRATCH, recorded)["verdict"] == "agree"


def test_check_against_the_recorded_set_judges_a_buffer_the_trace_leaves_out():
    recorded = load_recorded(BUNDLED)
    case = next(
        c for c in CASES if c.changes.get("optimizer") == "momentum" and c.changes.get("l2")
    )
    under_test = under_test_of(broken_engines.MomentumL2AfterBuffer)
    entry = run_case(case, recorded.references, under_test, recorded)
    assert entry["verdict"] == "disagree"
    # the buffer kept wrong, or the update taken from it: whichever first exceeds its allowance
    assert entry["first_divergence"]["tensor"] in ("momentum_W1", "ΔW1")
