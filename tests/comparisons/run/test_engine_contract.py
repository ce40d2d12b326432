"""The engine contract (comparisons/run/contract.py): any implementation in scratch's place.

The engines here wrap scratch and change one thing about what it offers through the
contract, so that each rule about a plugged engine is seen on its own: an optional tensor left
out is "not provided" (never agreement), a required one left out is a disagreement, a name
outside the schema is a disagreement, a trace that is not a dict is bad input, a factory that
cannot be loaded is bad input with one line.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from comparisons.cli import main
from comparisons.modes.drift import run_drift
from comparisons.modes.lockstep import run_lockstep
from comparisons.oracle.gradcheck import gradcheck
from comparisons.oracle.lockstep import NOT_PROVIDED, lockstep
from comparisons.run.contract import ContractError, required_names
from comparisons.run.engines import ScratchEngine, make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.under_test import ENTRY_POINTS, SCRATCH, load_under_test, under_test_of
from scratch.trace_schema import trace_names
from tests.comparisons.lockstep_cases import synthetic_spec
from tests.entry_points import install_engine

# An engine under test made in this module is named after it (run/under_test.py)
HERE = __name__.rpartition(".")[2]


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
    dropped = ("Z1", "dZ1", "ΔW2")
    kept = ("adam_v_b1", "t")  # entries of the state: compared from state() in their place
    result = run(problem, torch_ref, factory(drop=dropped + kept))
    assert result.verdict == "agree"
    order = trace_names(problem.mlp.n_layers, "adam")
    assert result.not_provided == sorted(dropped, key=order.index)
    compared = set(result.per_tensor["torch"].items())
    assert not compared & set(dropped)  # no figure of agreement for what was never compared
    assert set(kept) <= compared


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
    _, first, diverged, failure = gradcheck(inputs, 2, under_test=under_test_of(factory()))
    assert first is None and diverged is None and failure is None

    class Broken(Wrapped):
        def step(self, X, Y):
            trace = super().step(X, Y)
            trace["dW2"] = 1.01 * trace["dW2"]
            return trace

    _, first, _, _ = gradcheck(inputs, 2, under_test=under_test_of(lambda m, o, d: Broken(m, o, d)))
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
    module = install_engine(monkeypatch, "mine", "installed_engine_pkg", factory())
    under_test = load_under_test("mine")
    assert under_test.factory is module.make and under_test.package == "installed_engine_pkg"
    assert under_test.describe()["factory"] == "make"


def test_gradcheck_command_names_the_engine_in_its_report(tmp_path, capsys):
    out = tmp_path / "r"
    engine = f"{__name__}:scratch_behind_the_contract"
    args = ["gradcheck", "--set", "dataset=synthetic", "--out", str(out), "--engine", engine]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"engine under test: {HERE} ({engine}" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["under_test"]["name"] == HERE and report["under_test"]["spec"] == engine
    assert report["under_test"]["file"] == __file__


def scratch_behind_the_contract(mlp, optimizer, dtype):
    return Wrapped(mlp, optimizer, dtype)


# --- engines that keep the contract's letter but not its sense (an outside review's cases) ---

from examples.layered_mlp import LayeredMLP  # noqa: E402


class NoUpdate(LayeredMLP):
    """Reports the update in its trace but keeps the old parameters: it never trains."""

    def step(self, X, Y):
        old = [(layer.W, layer.b) for layer in self.dense]
        trace = super().step(X, Y)
        for layer, (W, b) in zip(self.dense, old, strict=True):
            layer.W, layer.b = W, b
        return trace


class NoCount(LayeredMLP):
    """Never advances its step count (and leaves t, optional, out of the trace)."""

    def step(self, X, Y):
        trace = super().step(X, Y)
        self.optimizer.t -= 1
        del trace["t"]
        return trace


class Reuse(LayeredMLP):
    """Returns the same arrays every step, overwritten in place by the next one."""

    buffers: dict | None = None

    def step(self, X, Y):
        trace = super().step(X, Y)
        if self.buffers is None or any(self.buffers[k].shape != v.shape for k, v in trace.items()):
            self.buffers = {k: np.array(v) for k, v in trace.items()}
        for k, v in trace.items():
            self.buffers[k][...] = v
        return dict(self.buffers)


class InPlace(LayeredMLP):
    """state() hands out its own arrays, and the update is written into them in place."""

    def state(self):
        params = {f"{n}{l}": getattr(d, n) for l, d in enumerate(self.dense, 1) for n in "Wb"}
        opt = {"t": self.optimizer.t}
        for p in self.names:
            opt.update({f"{s}_{p}": self.optimizer.buffers[p][s] for s in self.optimizer.slots})
        return params, opt

    def step(self, X, Y):
        old = [(layer.W, layer.b) for layer in self.dense]
        trace = super().step(X, Y)
        for layer, (W, b) in zip(self.dense, old, strict=True):
            W[...], b[...] = layer.W, layer.b
            layer.W, layer.b = W, b
        return trace


def _tweak(method):
    class Tweaked(LayeredMLP):
        pass

    for name, body in method.items():
        setattr(Tweaked, name, body)
    return Tweaked


@pytest.fixture(scope="module")
def adam():
    return build_inputs(synthetic_spec(optimizer="adam", engines=("scratch", "torch")))


@pytest.mark.torch
@pytest.mark.parametrize(
    ("cls", "tensor", "problem"),
    [
        (NoUpdate, "W1", "the engine keeps a W1 other than its trace's after step 0"),
        (NoCount, "t", "state()'s step count t went from 0 to 0 in step 0"),
    ],
)
def test_what_an_engine_keeps_must_be_what_its_trace_says(adam, cls, tensor, problem):
    torch = {"torch": make_engine("torch", adam.mlp, adam.optimizer, "float64")}
    result = run(adam, torch, cls, stop_at_first=True)
    d = result.first_divergence
    assert result.verdict == "disagree" and d.step == 0
    assert d.comparison.tensor == tensor and d.comparison.problem.startswith(problem)


@pytest.mark.torch
@pytest.mark.parametrize("cls", [Reuse, InPlace], ids=["reused-buffers", "in-place-update"])
def test_ordinary_engines_agree_however_they_keep_their_arrays(adam, cls):
    torch = {"torch": make_engine("torch", adam.mlp, adam.optimizer, "float64")}
    result = run(adam, torch, cls)
    assert result.verdict == "agree", result.first_divergence
    plain = run(adam, torch, LayeredMLP).first_step_traces["layered_mlp"]
    kept = result.first_step_traces[HERE]  # as it was at step 0, not overwritten since
    assert all(np.array_equal(kept[n], plain[n]) for n in plain)
    assert gradcheck(adam, 3, under_test=under_test_of(cls))[1:] == (None, None, None)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("change", "tensor"),
    [
        (lambda t: {**t, "loss": np.full(3, t["loss"])}, "loss"),
        (lambda t: {**t, "dW1": "oops"}, "dW1"),
        (lambda t: {**t, "Z1": None}, "Z1"),
    ],
    ids=["loss-shaped-(3,)", "a-string", "None"],
)
def test_malformed_tensors_are_disagreements_naming_them(adam, tmp_path, change, tensor):
    cls = _tweak({"step": lambda self, X, Y: change(LayeredMLP.step(self, X, Y))})
    report = run_lockstep(adam, under_test=under_test_of(cls))
    assert report["verdict"] == "disagree"
    assert report["first_divergence"]["tensor"] == tensor
    assert report["arbitration"]["wrong"] == HERE


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (lambda self: None, "state() must return (params, opt_state); got None"),
        (lambda self: (LayeredMLP.state(self)[0], {}), "state()'s state lack t, adam_m_W1, "),
        (
            lambda self: (
                {**LayeredMLP.state(self)[0], "W1": np.zeros((8, 5))},
                LayeredMLP.state(self)[1],
            ),
            "state()'s W1 has shape (8, 5), not (5, 8)",
        ),
    ],
    ids=["none", "no-t", "transposed"],
)
@pytest.mark.torch
@pytest.mark.parametrize("command", ["run", "drift", "gradcheck"])
def test_a_broken_state_is_bad_input_in_every_command(body, message, command, monkeypatch, capsys):
    module = types.ModuleType("broken_state_engine")
    module.make = _tweak({"state": body})
    monkeypatch.setitem(sys.modules, "broken_state_engine", module)
    args = [command, "--set", "dataset=synthetic", "--set", "optimizer=adam", "--set", "lr=0.01"]
    engines = ["--engines", "scratch,torch"]
    code = main([*args, *engines, "--engine", "broken_state_engine:make", "--quiet"])
    err = capsys.readouterr().err
    if command == "drift":  # drift never reads state(): the run goes on through step()
        assert code in (0, 1, 2) and "Traceback" not in err
    else:
        assert code == 2 and message in err and err.count("\n") == 1


def test_an_engine_that_raises_in_gradcheck_is_an_error_verdict():
    class Raises(LayeredMLP):
        calls = 0

        def step(self, X, Y):
            Raises.calls += 1
            if Raises.calls == 7:
                raise FloatingPointError("on the seventh call")
            return super().step(X, Y)

    inputs = build_inputs(synthetic_spec(engines=("scratch",)))
    _, first, diverged, failure = gradcheck(inputs, 2, under_test=under_test_of(Raises))
    assert (first, diverged) == (None, None) and failure is not None
    assert "on the seventh call" in failure.message and failure.engine == HERE
    assert failure.describe().startswith(f"{HERE} raised FloatingPointError")


@pytest.mark.parametrize("command", ["run", "drift"])
def test_a_plugged_engine_with_no_reference_is_bad_input(command, capsys):
    engine = f"{__name__}:scratch_behind_the_contract"
    args = [command, "--set", "dataset=synthetic", "--engines", "scratch", "--engine", engine]
    assert main([*args, "--quiet"]) == 2
    assert "is verified against the references; name at least one" in capsys.readouterr().err


@pytest.mark.torch
@pytest.mark.parametrize(
    ("change", "tensor"),
    [
        (lambda t: {**t, "W2": t["W2"].astype(np.float32)}, "W2"),
        (lambda t: {**t, "loss": np.full(3, t["loss"])}, "loss"),
        (lambda t: {k: v for k, v in t.items() if k != "b1"}, "b1"),
    ],
    ids=["float32-in-float64", "loss-shaped-(3,)", "no-b1"],
)
def test_drift_follows_only_a_loss_and_parameters_shaped_and_typed_as_the_run(change, tensor):
    inputs = build_inputs(synthetic_spec(engines=("scratch", "torch")))
    cls = _tweak({"step": lambda self, X, Y: change(LayeredMLP.step(self, X, Y))})
    report = run_drift(inputs, under_test=under_test_of(cls))
    assert report["verdict"] == "disagree"
    assert (report["first_divergence"]["step"], report["first_divergence"]["tensor"]) == (0, tensor)


# --- dropout: the masks are an input of the step ------------------------------------------


@pytest.fixture(scope="module")
def dropped():
    return build_inputs(synthetic_spec(dropout=0.4, engines=("scratch", "torch")))


def test_an_engine_whose_step_takes_no_masks_is_refused_in_a_dropout_run(dropped):
    with pytest.raises(ContractError, match="this run has dropout, and its step\\(\\) takes no"):
        lockstep(dropped, {}, under_test=under_test_of(factory()))


@pytest.mark.torch
def test_an_engine_given_the_masks_agrees_and_one_that_ignores_them_is_caught_at_d1(dropped):
    """The engine under test is given the schedule's masks: one that applies them agrees
    with PyTorch; one that runs without dropout (evaluation mode in training) is caught at
    the first dropped-out output, D1, and its masks are what it was given."""
    refs = {"torch": make_engine("torch", dropped.mlp, dropped.optimizer, "float64")}

    class Given(Wrapped):
        def step(self, X, Y, masks=None):
            return self._inner.step(X, Y, masks=masks)

    class Ignores(Wrapped):
        def step(self, X, Y, masks=None):
            trace = self._inner.step(X, Y, masks={k: np.ones_like(m) for k, m in masks.items()})
            return {**trace, **masks}  # claims the masks it was given

    assert lockstep(dropped, refs, under_test=under_test_of(Given)).verdict == "agree"
    result = lockstep(dropped, refs, under_test=under_test_of(Ignores))
    assert result.verdict == "disagree"
    assert result.first_divergence.comparison.tensor == "D1"
