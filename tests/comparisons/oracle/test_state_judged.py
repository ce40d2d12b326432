"""Every entry of an engine's state is judged after every step, whether its trace lists it or
not, and nothing is loaded into a reference that is not compared.

Lockstep loads every reference with the engine under test's state before each step, so an
entry of that state that nothing compares would be taken on trust: a wrong momentum buffer
the trace leaves out, a step count that never advances. The reference here is scratch itself
(correct, and fast): what is tested is what the oracle compares, not a framework.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.modes.check import run_case
from comparisons.modes.lockstep import run_lockstep
from comparisons.oracle.lockstep import lockstep
from comparisons.run.contract import state_names_of
from comparisons.run.coverage import CASES
from comparisons.run.engines import ScratchEngine, initial_state, make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.recorded import BUNDLED, load_recorded
from comparisons.run.under_test import under_test_of
from scratch.trace_schema import names_of
from tests.comparisons import broken_engines
from tests.comparisons.lockstep_cases import OPTIMIZER_SETTINGS, synthetic_spec

OPTIMIZERS = list(OPTIMIZER_SETTINGS)
SCHEDULES = [{}, {"lr_schedule": "step", "lr_step_size": 1, "lr_gamma": 0.5}]
CONFIGURATIONS = [
    pytest.param(
        {"optimizer": o, "batch_norm": bn, "dropout": drop, "clip_norm": clip, **s},
        id=f"{o}-bn{int(bn)}-drop{drop}-clip{clip}-{s.get('lr_schedule', 'constant')}",
    )
    for o, bn, drop, clip, s in itertools.product(
        OPTIMIZERS, [False, True], [0.0, 0.3], [0.0, 1.0], SCHEDULES
    )
]


def scratch_reference(inputs):
    return {"reference": ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)}


def first_steps(inputs, n=1):
    return inputs.schedule.steps[:n]


@pytest.mark.parametrize("changes", CONFIGURATIONS)
def test_every_entry_of_every_configurations_state_is_a_compared_name(changes):
    """What a reference is loaded with (the parameters and the whole optimizer state) is, name
    by name, a tensor of every step's comparison: the step count too, for every optimizer."""
    inputs = build_inputs(synthetic_spec(**changes))
    loaded = {**inputs.start(), **initial_state(inputs.optimizer, inputs.params0)}
    shapes, state = state_names_of(inputs.mlp, inputs.optimizer)
    assert set(loaded) == set(shapes) | set(state)
    assert set(loaded) <= set(names_of(inputs.mlp, inputs.optimizer))


def perturbing(key):
    """scratch behind the contract, leaving every optional tensor out of its trace and keeping
    a wrong ``key`` after each step."""

    class Perturbed(broken_engines.Contracted):
        def step(self, X, Y, masks=None):
            trace = self.inner.step(X, Y, masks=masks)
            params, state = self.inner.state()
            if key in params:
                params = {**params, key: params[key] + 0.5 * (1 + np.abs(params[key]))}
            else:
                wrong = state[key] + 1 if key == "t" else state[key] + 0.5 + np.abs(state[key])
                state = {**state, key: wrong}
            self.inner.set_state(params, state)
            required = {"loss"} | {n for n in trace if n.startswith("d") and n[1] in "Wbgt"}
            required |= set(params)
            return {n: v for n, v in trace.items() if n in required}

    return Perturbed


@pytest.mark.parametrize("changes", CONFIGURATIONS)
def test_a_wrong_entry_of_the_state_is_found_at_that_entry_whether_the_trace_lists_it(changes):
    inputs = build_inputs(synthetic_spec(**changes))
    shapes, state = state_names_of(inputs.mlp, inputs.optimizer)
    refs = scratch_reference(inputs)
    for key in [*shapes, *state]:
        result = lockstep(
            inputs, refs, steps=first_steps(inputs), under_test=under_test_of(perturbing(key))
        )
        d = result.first_divergence
        assert result.verdict == "disagree", key
        assert (d.step, d.comparison.tensor) == (0, key)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_a_momentum_buffer_kept_without_l2_and_left_out_of_the_trace_disagrees_there(optimizer):
    """Issue: L2 added after the buffer, the buffers left out of the trace, agreed."""
    inputs = build_inputs(synthetic_spec(optimizer=optimizer, l2=0.01))
    under_test = under_test_of(broken_engines.MomentumL2AfterBuffer)
    result = lockstep(inputs, scratch_reference(inputs), stop_at_first=True, under_test=under_test)
    d = result.first_divergence
    assert result.verdict == "disagree"
    assert (d.step, d.comparison.tensor) == (0, "momentum_W1")
    assert "momentum_W1" not in result.not_provided


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
def test_a_step_count_that_never_advances_disagrees_at_t_with_every_optimizer(optimizer):
    spec = synthetic_spec(optimizer=optimizer, lr_schedule="step", lr_step_size=1, lr_gamma=0.5)
    inputs = build_inputs(spec)
    under_test = under_test_of(broken_engines.FrozenCount)
    result = lockstep(inputs, scratch_reference(inputs), stop_at_first=True, under_test=under_test)
    d = result.first_divergence
    assert result.verdict == "disagree"
    assert (d.step, d.comparison.tensor) == (0, "t")


@pytest.mark.parametrize("plain", [False, True], ids=["chunked", "plain"])
def test_a_state_read_back_unlike_what_was_loaded_is_found_before_the_first_step(plain):
    """The start is loaded by the oracle: what the engine reports it holds then is what the
    references get, so it is compared with what it was given (by both lockstep paths)."""

    class Rounds(broken_engines.Contracted):
        def set_state(self, params, opt_state):
            super().set_state({k: np.round(v, 2) for k, v in params.items()}, opt_state)

    inputs = build_inputs(synthetic_spec())
    result = lockstep(
        inputs,
        scratch_reference(inputs),
        steps=first_steps(inputs),
        under_test=under_test_of(Rounds),
        plain=plain,
    )
    assert result.verdict == "disagree"
    assert result.first_divergence.comparison.tensor == "W1"
    assert "differs from the state it was given" in result.first_divergence.comparison.problem


# --- a shape that goes wrong mid-run ------------------------------------------------------


def test_a_bias_gradient_summed_over_the_wrong_axis_is_a_disagreement_at_that_step():
    """Issue: state()'s b3 (5,), not (1,), mid-run, was bad input (exit 2) with no step."""
    inputs = build_inputs(synthetic_spec(loss="bce_logits", output="identity", synthetic_classes=2))
    under_test = under_test_of(broken_engines.OutputBiasSummedOverUnits)
    result = lockstep(inputs, scratch_reference(inputs), under_test=under_test)
    d = result.first_divergence
    assert result.verdict == "disagree" and (d.step, d.comparison.tensor) == (0, "db3")
    assert "shape (5,) != (1,)" in d.comparison.problem
    assert result.steps_run == 1 and "nothing after it was verified" in result.stopped


@pytest.mark.torch
def test_a_shape_gone_wrong_mid_run_is_reported_by_run_not_refused(tmp_path):
    spec = synthetic_spec(engines=("scratch", "torch"))
    inputs = build_inputs(spec)
    report = run_lockstep(
        inputs, under_test=under_test_of(broken_engines.OutputBiasSummedOverUnits)
    )
    assert report["verdict"] == "disagree"
    assert report["first_divergence"]["tensor"] == "db3"
    assert report["first_divergence"]["step"] == 0
    assert report["metrics"] is None and "cannot be loaded" in report["metrics_note"]


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_scratch_whose_step_count_never_advances_disagrees_at_t(optimizer):
    """Issue: t was a trace tensor only for Adam, and every reference was loaded with the
    engine's t: a schedule whose counter never advanced agreed with sgd, momentum, nesterov."""
    fault = FAULTS_BY_NAME["sgd-step-count-not-advanced"]
    spec = synthetic_spec(optimizer=optimizer, engines=("scratch", "torch"), **fault.spec)
    inputs = build_inputs(spec)
    refs = {"torch": make_engine("torch", inputs.mlp, inputs.optimizer, inputs.spec.dtype)}
    with fault.patch():
        result = lockstep(inputs, refs, stop_at_first=True)
    d = result.first_divergence
    assert result.verdict == "disagree" and (d.step, d.comparison.tensor) == (0, "t")


def test_a_misshapen_tensor_leaves_the_other_tensors_their_own_allowances():
    """The allowances of a step whose trace holds a misshapen tensor are computed with the
    reference's value in its place: the first disagreement is the misshapen tensor, not a
    tensor upstream of it judged by the looser table (dZ3 at 1e-135 in a saturated case)."""
    recorded = load_recorded(BUNDLED)
    case = next(c for c in CASES if c.name == "leaky_relu-bce-adam-l2-saturated")
    under_test = under_test_of(broken_engines.OutputBiasSummedOverUnits)
    entry = run_case(case, recorded.references, under_test, recorded)
    assert entry["verdict"] == "disagree"
    assert (entry["first_divergence"]["step"], entry["first_divergence"]["tensor"]) == (0, "db3")
