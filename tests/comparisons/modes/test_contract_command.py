"""The engine contract of a run spec, printed (``python -m comparisons contract``), and
check's headline saying what was compared."""

from __future__ import annotations

import json

import numpy as np
import pytest

from comparisons import cli
from comparisons.modes.check import run_check
from comparisons.modes.contract import engine_contract
from comparisons.report.text import headline_details
from comparisons.run.contract import required_names
from comparisons.run.coverage import CASES
from comparisons.run.engines import ScratchEngine, initial_state
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec
from tests.comparisons.lockstep_cases import synthetic_spec

SPECS = {
    "momentum-clip-l2-dropout-step_lr": synthetic_spec(
        optimizer="momentum", clip_norm=1.0, l2=0.01, dropout=0.3,
        lr_schedule="step", lr_step_size=2,
    ),
    "adamw-batch_norm-cosine": synthetic_spec(
        optimizer="adamw", weight_decay=0.05, batch_norm=True, lr_schedule="cosine"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(SPECS))
def test_the_contract_lists_every_name_scratch_keeps_and_returns_with_its_shape(name):
    inputs = build_inputs(SPECS[name])
    contract = engine_contract(inputs)
    engine = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    engine.set_state(inputs.start(), initial_state(inputs.optimizer, inputs.params0))
    step = inputs.schedule.steps[0]
    X, Y = inputs.train
    trace = engine.step(X[step.rows], Y[step.rows], **inputs.step_keywords(step))
    assert [e["name"] for e in contract["trace"]] == list(trace)
    for e in contract["trace"]:
        assert tuple(e["shape"]) == np.shape(trace[e["name"]]), e["name"]
        assert e["equation"].split(" ")[0] == e["name"], e  # its own equation
    required = {e["name"] for e in contract["trace"] if e["required"]}
    mlp = inputs.mlp
    assert required == set(required_names(mlp.n_layers, inputs.optimizer.name, mlp.batch_norm))
    params, opt_state = engine.state()
    assert [e["name"] for e in contract["state"]] == [*params, *opt_state]
    for e in contract["state"]:
        value = params.get(e["name"], opt_state.get(e["name"]))
        assert tuple(e["shape"]) == np.shape(value), e["name"]
    given = inputs.step_keywords(step).get("masks", {})
    assert [e["name"] for e in contract["given"]] == list(given)


def test_the_contract_shows_the_configurations_equations():
    contract = engine_contract(build_inputs(SPECS["momentum-clip-l2-dropout-step_lr"]))
    momentum = next(e for e in contract["state"] if e["name"] == "momentum_W1")
    assert "(s·dW1 + l2·W1)" in momentum["equation"]
    assert next(e for e in contract["trace"] if e["name"] == "lr")["equation"].startswith("lr = ")


def test_the_contract_command_prints_it(capsys):
    args = ["contract", "--set", "dataset=synthetic", "--set", "optimizer=adam", "--set", "lr=0.01"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    for text in ("adam_m_W1", "adam_v_b2", "required", "optional", "dW1 = X.T @ dZ1"):
        assert text in out
    assert cli.main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {"run", "state", "given", "trace"} <= set(printed)


@pytest.mark.realdata
def test_the_occupancy_contract_needs_no_data_and_is_the_one_its_data_gives(
    occupancy_dir, tmp_path, monkeypatch, capsys
):
    """Offline, without the data set: the contract is the same as with the data loaded
    (shapes, the schedule's length for a cosine decay), and nothing is downloaded."""
    spec = RunSpec().replace(lr_schedule="cosine", optimizer="adam", lr=0.01)
    with_data = engine_contract(build_inputs(spec, str(occupancy_dir)))
    monkeypatch.delenv("OCCUPANCY_DATA_DIR", raising=False)
    monkeypatch.setenv("BACKPROP_ORACLE_CACHE", str(tmp_path / "cache"))
    assert engine_contract(build_inputs(spec, shapes_only=True)) == with_data
    assert cli.main(["contract", "--set", "optimizer=adam", "--set", "lr=0.01"]) == 0
    assert "adam_m_W1  (5, 8)" in capsys.readouterr().out
    assert not (tmp_path / "cache").exists()


@pytest.mark.torch
def test_checks_headline_says_what_was_compared():
    case = next(c for c in CASES if c.spec(()).optimizer.name == "momentum")
    report = run_check(("torch",), cases=(case,))
    compared = report["compared"]
    assert {"forward", "error_term", "gradient", "optimizer_state", "parameter"} <= set(compared)
    line = next(x for x in headline_details(report) if x.startswith("compared"))
    assert "optimizer state" in line and "gradients" in line
