"""One engine protocol (``run/contract.py``), implemented by every engine the oracle drives:
scratch's, both references, a recorded set's replay and the example plugged engine. Each
gives back through ``state()`` what ``set_state`` loaded, and after a step what its trace
says, with the step count one up."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.run.contract import Engine
from comparisons.run.engines import ScratchEngine, initial_state, make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec
from examples.layered_mlp import make_engine as make_example

CONFIGS = {
    "adam-batch-norm": {"optimizer": "adam", "lr": 0.01, "batch_norm": True},
    "momentum": {"optimizer": "momentum", "lr": 0.02, "momentum": 0.9},
    "sgd": {"optimizer": "sgd"},
}
ENGINES = [
    "scratch",
    "example",
    pytest.param("torch", marks=pytest.mark.torch),
    pytest.param("jax", marks=pytest.mark.jax),
]


def engine_named(name: str, inputs):
    settings = (inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    if name == "scratch":
        return ScratchEngine(*settings)
    if name == "example":
        return make_example(*settings)
    return make_engine(name, *settings)


def same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=list(CONFIGS))
@pytest.mark.parametrize("name", ENGINES)
def test_every_engine_keeps_the_one_protocol_and_its_state_is_what_it_was_given(name, config):
    spec = RunSpec().replace(dataset="synthetic", synthetic_rows=12, batch_size=4, **config)
    inputs = build_inputs(spec)
    engine = engine_named(name, inputs)
    assert isinstance(engine, Engine), f"{name} lacks a method of run/contract.py's Engine"
    params = inputs.start()
    opt_state = initial_state(inputs.optimizer, params)
    engine.set_state(params, opt_state)
    got_params, got_state = engine.state()
    same(got_params, params)
    same(got_state, opt_state)
    step = inputs.schedule.steps[0]
    X, Y = inputs.train
    trace = engine.step(X[step.rows], Y[step.rows])
    got_params, got_state = engine.state()
    for key, value in {**got_params, **got_state}.items():
        if key in trace and key != "t":
            np.testing.assert_array_equal(np.asarray(value), np.asarray(trace[key]), err_msg=key)
    assert int(got_state["t"]) == int(opt_state["t"]) + 1


def test_a_recorded_sets_replay_keeps_the_protocol_and_hands_back_its_traces_state():
    from pathlib import Path

    from comparisons.run.recorded import ReplayEngine, load_recorded

    recorded = load_recorded(Path(__file__).parents[3] / "comparisons" / "recorded")
    case = next(iter(recorded.cases.values()))
    engine = ReplayEngine(case, recorded.references[0])
    assert isinstance(engine, Engine)
    params, opt_state = case.state(0)
    engine.set_state(params, opt_state)
    same(engine.state()[0], params)
    trace = engine.step(None, None)
    got_params, got_state = engine.state()
    for key, value in {**got_params, **got_state}.items():
        if key in trace:
            np.testing.assert_array_equal(np.asarray(value), np.asarray(trace[key]), err_msg=key)
