"""The example engine (examples/layered_mlp.py): an independent backprop, verified by the
public contract alone — sound it agrees on every case of check's covering set, and a copy with
one equation broken fails at that equation's tensor, on the first step that exercises it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from comparisons.cli import main
from comparisons.oracle.lockstep import lockstep
from comparisons.run.engines import make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.under_test import load_under_test
from tests.comparisons.lockstep_cases import synthetic_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "layered_mlp.py"
ENGINE = "examples.layered_mlp:make_engine"


def test_the_example_uses_nothing_of_this_project():
    source = EXAMPLE.read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["from __future__ import annotations", "import numpy as np"]


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"])
def test_the_example_agrees_in_lockstep_and_leaves_out_only_the_updates(optimizer):
    inputs = build_inputs(synthetic_spec(optimizer=optimizer, engines=("scratch", "torch")))
    torch = make_engine("torch", inputs.mlp, inputs.optimizer, "float64")
    result = lockstep(inputs, {"torch": torch}, under_test=load_under_test(ENGINE))
    assert result.verdict == "agree" and result.steps_run == len(inputs.schedule)
    assert result.not_provided == ["ΔW1", "Δb1", "ΔW2", "Δb2", "ΔW3", "Δb3"]


@pytest.mark.torch
def test_run_names_the_engine_under_test_in_its_verdict(tmp_path, capsys):
    args = ["run", "--set", "dataset=synthetic", "--engines", "torch", "--engine", ENGINE]
    assert main([*args, "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("AGREE: layered_mlp, torch agree on every tensor of all ")


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
def test_check_agrees_on_every_path_of_the_example(tmp_path, capsys):
    assert main(["check", "--engine", ENGINE, "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert all(case["verdict"] == "agree" for case in report["cases"])
    assert report["under_test"]["file"] == str(EXAMPLE)
    assert capsys.readouterr().out.startswith("AGREE: layered_mlp agrees with")


# (name, the sound line, the broken line, the first tensor that must disagree: for an
# activation's derivative, the error term of the layer where check's first failing case has
# that activation, hidden or output)
BREAKS = [
    ("bias-gradient-mean", "self.db = dz.sum(axis=0)", "self.db = dz.mean(axis=0)", "db3"),
    ("tanh-derivative", "return da * (1 - self.a**2)", "return da * (1 - self.a)", r"dZ\d"),
    ("weight-gradient-mean", "self.dW = self.x.T @ dz", "self.dW = self.x.T @ dz / len(dz)", "dW3"),
    # elu' = A below 0 (the α of A + α dropped)
    ("elu-derivative", "ELU_ALPHA * np.exp(self.negative)", "np.expm1(self.negative)", r"dZ\d"),
]


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize(("name", "sound", "broken", "tensor"), BREAKS, ids=[b[0] for b in BREAKS])
def test_check_names_the_broken_equation_of_a_copy(
    name, sound, broken, tensor, tmp_path, monkeypatch, capsys
):
    source = EXAMPLE.read_text(encoding="utf-8")
    assert source.count(sound) == 1, "the example changed: update the broken line"
    module = f"broken_{name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(source.replace(sound, broken), encoding="utf-8")
    out = tmp_path / "r"
    args = ["check", "--engine", f"{module}:make_engine", "--out", str(out)]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(args) == 1
    report = json.loads((out / "report.json").read_text())
    first = report["first_divergence"]
    assert re.fullmatch(tensor, first["tensor"]), first
    assert report["arbitration"]["wrong"] == module  # the engine under test, by its name
    assert f"who is wrong: {module} is wrong" in capsys.readouterr().out
