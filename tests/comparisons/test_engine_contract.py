"""The engine contract (comparisons/run/contract.py): any implementation in scratch's place.

The engines here wrap scratch and change one thing about what it offers through the
contract, so that each rule about a plugged engine is seen on its own: an optional tensor left
out is "not provided" (never agreement), a required one left out is a disagreement, a name
outside the schema is a disagreement, a trace that is not a dict is bad input, a factory that
cannot be loaded is bad input with one line.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import types

import numpy as np
import pytest

from comparisons.cli import main
from comparisons.modes.lockstep import run_lockstep
from comparisons.oracle.gradcheck import gradcheck
from comparisons.oracle.lockstep import NOT_PROVIDED, lockstep
from comparisons.run.contract import ContractError, required_names
from comparisons.run.engines import ScratchEngine, make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.under_test import ENTRY_POINTS, SCRATCH, load_under_test, under_test_of
from scratch.trace_schema import trace_names
from tests.comparisons.lockstep_cases import synthetic_spec


class Wrapped:
    """scratch behind the contract only: ``set_state``, ``state``, ``step``, ``predict``;
    not ``complete``, so the contract's optional tensors may be left out."""

    def __init__(self, mlp, optimizer, dtype, drop=(), rename=None):
        self._inner = ScratchEngine(mlp, optimizer, dtype)
        self.drop, self.rename = drop, rename or {}

    def set_state(self, params, opt_state):
        self._inner.set_state(params, opt_state)

    def state(self):
        return self._inner.state()

    def step(self, X, Y):
        trace = self._inner.step(X, Y)
        trace = {self.rename.get(n, n): v for n, v in trace.items() if n not in self.drop}
        return trace

    def predict(self, X):
        return self._inner.predict(X)


def factory(**kwargs):
    def make(mlp, optimizer, dtype):
        return Wrapped(mlp, optimizer, dtype, **kwargs)

    return make


@pytest.fixture(scope="module")
def problem():
    return build_inputs(synthetic_spec(optimizer="adam", lr=0.01, engines=("scratch", "torch")))


@pytest.fixture(scope="module")
def torch_ref(problem):
    pytest.importorskip("torch")
    return {"torch": make_engine("torch", problem.mlp, problem.optimizer, "float64")}


def run(problem, refs, make, **kwargs):
    return lockstep(problem, refs, under_test=under_test_of(make), **kwargs)


def test_required_names_are_the_loss_the_gradients_and_the_new_parameters():
    names = required_names(2, "adam")
    assert names == ["loss", "dW2", "db2", "dW1", "db1", "W1", "b1", "W2", "b2"]
    assert set(names) < set(trace_names(2, "adam"))


@pytest.mark.torch
def test_an_engine_of_the_contract_agrees_where_scratch_does(problem, torch_ref):
    result = run(problem, torch_ref, factory())
    assert result.verdict == "agree" and result.not_provided == []
    assert result.steps_run == len(problem.schedule)


@pytest.mark.torch
def test_an_optional_tensor_left_out_is_not_provided_never_agreement(problem, torch_ref):
    dropped = ("Z1", "dZ1", "ΔW2", "adam_v_b1", "t")
    result = run(problem, torch_ref, factory(drop=dropped))
    assert result.verdict == "agree"
    order = trace_names(problem.mlp.n_layers, "adam")
    assert result.not_provided == sorted(dropped, key=order.index)
    compared = set(result.per_tensor["torch"].items())
    assert not compared & set(dropped)  # no figure of agreement for what was never compared


@pytest.mark.torch
def test_a_required_tensor_left_out_is_a_disagreement_at_its_place(problem, torch_ref):
    result = run(problem, torch_ref, factory(drop=("dW1",)), stop_at_first=True)
    d = result.first_divergence
    assert result.verdict == "disagree"
    assert (d.step, d.comparison.tensor, d.comparison.problem) == (0, "dW1", NOT_PROVIDED)


@pytest.mark.torch
def test_a_tensor_wrong_where_another_is_not_provided_is_still_found(problem, torch_ref):
    """Allowances of a partial trace are computed with the references' values for what the
    engine left out: a fault in what it does provide is caught all the same."""

    class Broken(Wrapped):
        def step(self, X, Y):
            trace = super().step(X, Y)
            trace["db1"] = trace["db1"] * (1 + 1e-6)
            return trace

    result = run(
        problem,
        torch_ref,
        lambda m, o, d: Broken(m, o, d, drop=("Z1", "A1")),
        stop_at_first=True,
    )
    assert result.verdict == "disagree" and result.first_divergence.comparison.tensor == "db1"
    assert "where it computes" in result.first_divergence.look_at  # not scratch's function


@pytest.mark.torch
def test_an_extra_name_does_not_turn_a_tensor_left_out_into_a_disagreement(problem, torch_ref):
    """As many names as the schema, one of them foreign: the one left out is still only not
    provided, and the foreign one is the disagreement."""

    class Swapped(Wrapped):
        def step(self, X, Y):
            trace = super().step(X, Y)
            trace["debug"] = trace.pop("Z1")
            return trace

    result = run(problem, torch_ref, lambda m, o, d: Swapped(m, o, d), stop_at_first=True)
    assert result.not_provided == ["Z1"]
    assert result.first_divergence.comparison.tensor == "debug"


@pytest.mark.torch
def test_a_name_outside_the_schema_is_a_disagreement(problem, torch_ref):
    result = run(problem, torch_ref, factory(rename={"dW1": "dw1"}), stop_at_first=True)
    assert result.verdict == "disagree"
    assert result.first_divergence.comparison.tensor in ("dW1", "dw1")


@pytest.mark.torch
def test_a_trace_that_is_not_a_dict_is_bad_input(problem, torch_ref):
    class Listy(Wrapped):
        def step(self, X, Y):
            return list(super().step(X, Y).values())

    with pytest.raises(ContractError, match="returned a list"):
        run(problem, torch_ref, lambda m, o, d: Listy(m, o, d))


@pytest.mark.torch
def test_torch_tensors_in_a_trace_and_a_state_are_read_as_arrays(problem, torch_ref):
    import torch

    class Tensors(Wrapped):
        def state(self):
            params, state = super().state()
            return {k: torch.tensor(v) for k, v in params.items()}, state

        def step(self, X, Y):
            return {k: torch.tensor(np.asarray(v)) for k, v in super().step(X, Y).items()}

    result = run(problem, torch_ref, lambda m, o, d: Tensors(m, o, d))
    assert result.verdict == "agree", (result.failure, result.first_divergence)


class DeviceArray:
    """Like a GPU array: NumPy may not read it without an explicit copy."""

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed")


@pytest.mark.torch
def test_an_array_numpy_cannot_read_is_bad_input_naming_it(problem, torch_ref):
    class OnDevice(Wrapped):
        def step(self, X, Y):
            return {**super().step(X, Y), "dW1": DeviceArray()}

    with pytest.raises(ContractError, match=r"step\(\): dW1 is a DeviceArray NumPy cannot read"):
        run(problem, torch_ref, lambda m, o, d: OnDevice(m, o, d))


@pytest.mark.torch
def test_an_engine_that_raises_is_an_error_verdict_naming_its_own_frame(problem, torch_ref):
    class Raises(Wrapped):
        def step(self, X, Y):
            raise FloatingPointError("boom in the engine")

    result = run(problem, torch_ref, lambda m, o, d: Raises(m, o, d))
    assert result.verdict == "error"
    assert "boom in the engine" in result.failure.message
    assert __name__.split(".")[0] == "tests" and "test_engine_contract" in result.failure.where


@pytest.mark.torch
def test_a_predict_that_raises_is_an_error_verdict_not_a_crash(problem):
    class NoPredict(Wrapped):
        def predict(self, X):
            raise NotImplementedError("predict is left for later")

    report = run_lockstep(problem, under_test=under_test_of(lambda m, o, d: NoPredict(m, o, d)))
    assert report["verdict"] == "error" and report["metrics"] is None
    assert (
        "predict, on the final parameters: predict is left for later" in report["error"]["message"]
    )
    assert "test_engine_contract.py" in report["error"]["where"]


def test_gradcheck_through_the_contract_agrees_and_catches_a_wrong_gradient():
    inputs = build_inputs(synthetic_spec(optimizer="momentum", engines=("scratch",)))
    _, first, diverged = gradcheck(inputs, 2, under_test=under_test_of(factory()))
    assert first is None and diverged is None

    class Broken(Wrapped):
        def step(self, X, Y):
            trace = super().step(X, Y)
            trace["dW2"] = 1.01 * trace["dW2"]
            return trace

    _, first, _ = gradcheck(inputs, 2, under_test=under_test_of(lambda m, o, d: Broken(m, o, d)))
    assert first is not None and first.comparison.tensor == "dW2" and first.step == 0


def test_the_scratch_engine_is_the_default_and_complete():
    assert load_under_test(None) is SCRATCH and load_under_test(" scratch ") is SCRATCH
    assert under_test_of(ScratchEngine) is SCRATCH and ScratchEngine.complete


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
        ("json:no_such_factory", "module 'json' has no 'no_such_factory'"),
        ("json:__doc__", "is a str, not a callable factory"),
        ("not a module:make", "is not a module name"),
        ("unregistered-name", f"no engine of that name (registered in {ENTRY_POINTS}"),
        ("json:dumps", "the factory raised TypeError"),
        ("builtins:slice", "made a slice, which lacks set_state, state, step, predict"),
    ],
)
def test_a_bad_engine_is_one_line_and_exit_2(given, message, capsys):
    args = ["gradcheck", "--set", "dataset=synthetic", "--quiet", "--engine", given]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_an_engine_whose_module_raises_on_import_is_bad_input(tmp_path, monkeypatch, capsys):
    (tmp_path / "raising_engine_mod.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["gradcheck", "--quiet", "--engine", "raising_engine_mod:make"]) == 2
    assert "raised RuntimeError: half-written" in capsys.readouterr().err


def test_an_installed_engine_is_found_by_its_entry_point_name(monkeypatch):
    module = types.ModuleType("installed_engine_pkg")
    module.make = factory()
    monkeypatch.setitem(sys.modules, "installed_engine_pkg", module)
    point = importlib.metadata.EntryPoint("mine", "installed_engine_pkg:make", ENTRY_POINTS)
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group=None: [point] if group == ENTRY_POINTS else [],
    )
    under_test = load_under_test("mine")
    assert under_test.factory is module.make and under_test.package == "installed_engine_pkg"
    assert under_test.describe()["factory"] == "make"


def test_gradcheck_command_names_the_engine_in_its_report(tmp_path, capsys):
    out = tmp_path / "r"
    engine = f"{__name__}:scratch_behind_the_contract"
    args = ["gradcheck", "--set", "dataset=synthetic", "--out", str(out), "--engine", engine]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"engine under test: {engine}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["under_test"]["name"] == engine
    assert report["under_test"]["file"] == __file__


def scratch_behind_the_contract(mlp, optimizer, dtype):
    return Wrapped(mlp, optimizer, dtype)
