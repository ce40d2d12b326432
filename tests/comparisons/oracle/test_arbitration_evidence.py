"""The arbitration blames only with evidence: judges that agree with each other and not with
the blamed side; "undecided" otherwise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import comparisons.run.inputs
from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.faults.runner import run_fault
from comparisons.oracle.arbitration import arbitrate, documented_masks, documented_rows
from comparisons.run.inputs import build_inputs
from data.dropout import keep_masks
from tests.comparisons.lockstep_cases import run, synthetic_spec

SPEC = synthetic_spec(dropout=0.3)


def other_stream(seed, step, batch, widths, rate, dtype):
    """A broken data/dropout.py: the schedule's stream, not the dropout's own."""
    return keep_masks(seed + 1, step, batch, widths, rate, dtype)


def first_divergence_arbitrated():
    problem = build_inputs(SPEC)
    result = run(problem, "torch", stop_at_first=True)
    assert result.first_divergence is not None, "the broken masks were not caught"
    assert result.first_divergence.comparison.kind == "dropout_mask"
    return arbitrate(problem, result.first_divergence, result.divergent_step)


def test_the_documented_draw_is_data_dropouts():
    # the judge is written from data/dropout.py's docstring; on sound code the two agree
    for step in (0, 7):
        ours = documented_masks(3, step, 5, (6, 4), 0.3, "float32")
        theirs = keep_masks(3, step, 5, (6, 4), 0.3, "float32")
        assert ours.keys() == theirs.keys()
        for name in ours:
            np.testing.assert_array_equal(ours[name], theirs[name])
            assert ours[name].dtype == theirs[name].dtype


@pytest.mark.torch
def test_masks_broken_in_data_dropout_blame_data_dropout_not_scratch(monkeypatch):
    monkeypatch.setattr(comparisons.run.inputs, "keep_masks", other_stream)
    found = first_divergence_arbitrated()
    assert found["wrong"] == "data/dropout.py", found["explanation"]
    assert "scratch is wrong" not in found["explanation"]
    assert found["look_at"] == "data/dropout.py:keep_masks"


@pytest.mark.torch
def test_masks_broken_in_scratch_blame_scratch():
    with FAULTS_BY_NAME["mask-keeps-with-rate"].patch():
        found = first_divergence_arbitrated()
    assert found["wrong"] == "scratch", found["explanation"]
    assert "look_at" not in found  # the divergence's own: scratch/network.py:dropout_masks


@pytest.mark.torch
def test_masks_broken_on_both_sides_are_undecided(monkeypatch):
    monkeypatch.setattr(comparisons.run.inputs, "keep_masks", other_stream)
    with FAULTS_BY_NAME["mask-keeps-with-rate"].patch():
        found = first_divergence_arbitrated()
    assert found["wrong"] == "undecided", found["explanation"]


@pytest.mark.torch
@pytest.mark.jax
def test_the_derivative_at_an_exact_kink_is_caught_localized_and_blamed_on_scratch():
    # leaky_relu'(0) = 1: where a row's units were all dropped, the output's Z is exactly its
    # zero bias in every engine, so no allowance for an uncertain sign may absorb it; finite
    # differences across the kink average both slopes and agree with no engine
    fault = FAULTS_BY_NAME["leaky-relu-derivative-at-zero"]
    found = run_fault(fault, ("torch", "jax"))
    assert found["sound_run_agrees"]
    assert found["caught"] and found["first_divergence"]["tensor"] == "dZ2"
    assert found["arbitration"]["wrong"] == "scratch", found["arbitration"]["explanation"]


@pytest.mark.parametrize(
    "changes", [{}, {"shuffle": False}, {"drop_last": True}, {"batch_size": 1, "epochs": 1}]
)
def test_the_documented_batches_are_the_schedules(changes):
    schedule = build_inputs(synthetic_spec(**changes)).schedule
    problem = build_inputs(synthetic_spec(**changes))
    for step in schedule.steps:
        np.testing.assert_array_equal(documented_rows(problem, step.index), step.rows)
    assert documented_rows(problem, len(schedule.steps)) is None


def batch_divergence_arbitrated(problem):
    with np.errstate(all="ignore"):  # a wrong batch's values may overflow the comparison
        result = run(problem, "torch", stop_at_first=True)
    assert result.first_divergence is not None, "the broken batching was not caught"
    assert result.first_divergence.comparison.kind in ("batch", "input")
    return arbitrate(problem, result.first_divergence, result.divergent_step)


@pytest.mark.torch
def test_a_schedule_broken_in_data_schedule_blames_data_schedule_not_scratch():
    problem = build_inputs(synthetic_spec())
    schedule = problem.schedule
    # the schedule's own batch no longer a slice of its order (its step 1 reversed)
    broken = tuple(
        dataclasses.replace(s, rows=s.rows[::-1].copy()) if s.index == 1 else s
        for s in schedule.steps
    )
    problem = dataclasses.replace(problem, schedule=dataclasses.replace(schedule, steps=broken))
    found = batch_divergence_arbitrated(problem)
    assert found["wrong"] == "data/schedule.py", found["explanation"]
    assert found["look_at"] == "data/schedule.py:make_schedule"


@pytest.mark.torch
def test_batching_broken_in_scratch_blames_scratch():
    with FAULTS_BY_NAME["extra-batch"].patch():
        found = batch_divergence_arbitrated(build_inputs(synthetic_spec()))
    assert found["wrong"] == "scratch", found["explanation"]
