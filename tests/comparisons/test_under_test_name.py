"""The engine under test has its own name everywhere: a plugged engine is never called scratch.

Its name (``run/under_test.py``) keys its entries in report.json and the CSVs, labels the
plots and tables, and is what every message, arbitration and tolerance text calls it; and
``--engines`` (the spec's ``engines``) names the references alone."""

from __future__ import annotations

import csv
import json
import os
import sys
import types
from pathlib import Path

import pytest

from comparisons.cli import _references, main
from comparisons.oracle.adapters import look_at_tensor
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec, SpecError
from comparisons.run.under_test import SCRATCH, display_name, load_under_test
from examples.layered_mlp import make_engine
from tests.entry_points import install_engine

EXAMPLE = Path(__file__).parents[2] / "examples" / "layered_mlp.py"
ENGINE = "examples.layered_mlp:make_engine"
SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=60", "--set", "epochs=1"]


def keys_and_strings(value, path=""):
    """Every (path, key) and (path, string) of a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k
            yield from keys_and_strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from keys_and_strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


# --- the name ------------------------------------------------------------------------------


def test_scratch_is_named_scratch_and_a_plugged_engine_after_its_module():
    assert (SCRATCH.name, SCRATCH.spec) == ("scratch", "scratch")
    plugged = load_under_test(ENGINE)
    assert (plugged.name, plugged.spec) == ("layered_mlp", ENGINE)
    assert plugged.describe()["name"] == "layered_mlp" and plugged.describe()["spec"] == ENGINE


@pytest.mark.parametrize(
    ("wanted", "name"),
    [
        ("layered_mlp", "layered_mlp"),
        ("torch", "torch_under_test"),  # a reference's name: never two engines of one name
        ("jax", "jax_under_test"),
        ("scratch", "scratch_under_test"),  # a plugged engine is never called scratch
        ("my.engine v2", "my_engine_v2"),  # a CSV column is "loss.<name>": no dots, no spaces
        ("", "engine"),
    ],
)
def test_a_name_is_a_plain_word_no_reference_or_scratch_has(wanted, name):
    assert display_name(wanted) == name


def test_a_module_named_like_a_reference_gives_an_engine_of_another_name(monkeypatch):
    module = types.ModuleType("mylib.torch")
    module.make = make_engine
    monkeypatch.setitem(sys.modules, "mylib", types.ModuleType("mylib"))
    monkeypatch.setitem(sys.modules, "mylib.torch", module)
    assert load_under_test("mylib.torch:make").name == "torch_under_test"


def test_an_installed_engine_is_named_by_its_entry_point_and_looked_at_in_its_module(
    monkeypatch,
):
    install_engine(monkeypatch, "fast-mlp", "installed_pkg.engines", make_engine)
    under_test = load_under_test("fast-mlp")
    assert (under_test.name, under_test.spec) == ("fast-mlp", "fast-mlp")
    inputs = build_inputs(RunSpec().replace(dataset="synthetic", engines=()))
    assert look_at_tensor(inputs, under_test, "db1") == (
        "installed_pkg.engines:make: where it computes db1 = Σ over the batch of dZ1"
    )


# --- engines: the references --------------------------------------------------------------


def test_engines_names_the_references_and_scratch_in_it_is_dropped():
    assert RunSpec().engines == ("torch", "jax")
    assert RunSpec().replace(engines=("torch",)).engines == ("torch",)
    assert RunSpec().replace(engines=("scratch", "jax")).engines == ("jax",)  # as it once was
    assert RunSpec().replace(engines=("scratch",)).engines == ()  # the engine under test alone
    assert RunSpec().replace(engines=()).to_dict()["engines"] == []
    with pytest.raises(SpecError, match="engines: unknown value 'layered_mlp'; choose one of"):
        RunSpec().replace(engines=("layered_mlp",))


def test_check_and_faults_take_references_alone_and_drop_scratch_as_run_does():
    assert _references("scratch,torch", "--engines") == ("torch",)
    assert _references("jax", "--engines") == ("jax",)
    with pytest.raises(SpecError, match="is in every run by itself"):
        _references("scratch", "--engines")


def test_a_plugged_engine_with_scratch_alone_in_engines_still_needs_a_reference(capsys):
    args = ["run", *SMALL, "--engines", "scratch", "--engine", ENGINE, "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "layered_mlp (--engine examples.layered_mlp:make_engine) is verified against" in err


# --- a plugged engine's report -------------------------------------------------------------


@pytest.fixture(scope="module")
def plugged(tmp_path_factory):
    """``run --engine examples.layered_mlp:make_engine`` against PyTorch: its folder, and
    what it printed."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("plugged") / "r"
    args = ["run", *SMALL, "--engines", "torch", "--engine", ENGINE, "--out", str(out)]
    printed = _main(args)
    return out, printed


def _main(args: list[str]) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(args)
    assert code in (0, 1), buffer.getvalue()
    return buffer.getvalue()


@pytest.mark.torch
def test_a_plugged_engines_report_has_no_scratch_key(plugged):
    out, printed = plugged
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 2 and report["verdict"] == "agree"
    keys = [(where, k) for where, k in keys_and_strings(report) if k == "scratch"]
    assert keys == [], keys
    assert report["engines"] == ["layered_mlp", "torch"] and report["spec"]["engines"] == ["torch"]
    assert report["under_test"]["name"] == "layered_mlp"
    assert report["under_test"]["spec"] == ENGINE
    assert set(report["per_step"][0]["loss"]) == {"layered_mlp", "torch"}
    assert set(report["metrics"]) == {"layered_mlp", "torch"}
    assert set(report["walkthrough"][0]["values"]) == {"layered_mlp", "torch"}
    assert set(report["walkthrough"][0]["max_abs_vs_under_test"]) == {"torch"}
    assert printed.startswith("AGREE: layered_mlp, torch agree on every tensor of all 2 steps")
    assert f"engine under test: layered_mlp ({ENGINE}; file {EXAMPLE})" in printed


@pytest.mark.torch
def test_a_plugged_engines_tables_and_csvs_name_it(plugged):
    out, _ = plugged
    with (out / "steps.csv").open() as f:
        assert next(csv.reader(f))[:4] == ["step", "epoch", "loss.layered_mlp", "loss.torch"]
    with (out / "metrics.csv").open() as f:
        assert {row["engine"] for row in csv.DictReader(f)} == {"layered_mlp", "torch"}
    markdown = (out / "report.md").read_text()
    assert "| stage | equation | shape | layered_mlp | torch | max \\|diff\\| torch |" in markdown
    assert "the largest |difference| from layered_mlp over the tensor" in markdown
    assert "the largest |layered_mlp − reference|" in markdown
    assert "An element passes when |layered_mlp − reference| is within its allowance" in markdown
    words = markdown.replace("scratch/", "").replace("scratch's batching function", "")
    assert "scratch" not in words


@pytest.mark.torch
@pytest.mark.figures
def test_a_plugged_engines_plots_name_it(plugged, monkeypatch):
    if "reports" not in os.environ.get("BACKPROP_ORACLE_REQUIRE", "").split(","):
        pytest.importorskip(
            "matplotlib", reason="the plots need matplotlib (pip install '.[reports]')"
        )
    from comparisons.report import plot_style, plots

    out, _ = plugged
    report = json.loads((out / "report.json").read_text())
    drawn = []
    monkeypatch.setattr(plot_style, "png", lambda fig: drawn.append(fig) or b"png")
    plots.loss_plot(report)
    legend = [t.get_text() for t in drawn[-1].axes[0].get_legend().get_texts()]
    assert legend == ["layered_mlp", "torch"]
    ours = drawn[-1].axes[0].get_lines()[0]
    assert ours.get_color() == plot_style.UNDER_TEST_COLOR  # drawn as the engine under test
    plots.worst_rel_plot(report)
    assert drawn[-1].axes[0].get_title() == "layered_mlp vs torch"
    plots.heatmap_plot(report)
    assert drawn[-1].axes[0].get_title() == "layered_mlp vs torch"
    plots.accuracy_plot(report)
    labels = drawn[-1].axes[0].get_legend_handles_labels()[1]
    assert labels == ["layered_mlp", "torch"]
    captions = " ".join(f.caption + f.alt for f in plots.plots_for(report))
    assert "(layered_mlp solid, references dashed)" in captions and "scratch" not in captions


# --- a broken plugged engine: first divergence, arbitration, look-at ------------------------


def _copy(tmp_path, monkeypatch, module: str, sound: str, broken: str) -> str:
    source = EXAMPLE.read_text(encoding="utf-8")
    assert source.count(sound) == 1, "the example changed: update the broken line"
    (tmp_path / f"{module}.py").write_text(source.replace(sound, broken), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{module}:make_engine"


@pytest.mark.torch
@pytest.mark.jax
def test_a_broken_plugged_engine_is_named_in_every_finding(tmp_path, monkeypatch):
    sound, broken = "self.db = dz.sum(axis=0)", "self.db = dz.mean(axis=0)"
    engine = _copy(tmp_path, monkeypatch, "mean_bias", sound, broken)
    out = tmp_path / "r"
    printed = _main(["run", *SMALL, "--engine", engine, "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    d = report["first_divergence"]
    assert (d["tensor"], d["engine"]) == ("db3", "torch")
    assert "under_test_value" in d and "scratch_value" not in d
    assert report["arbitration"]["wrong"] == "mean_bias"
    assert report["arbitration"]["explanation"] == (
        "mean_bias is wrong: torch, jax and finite differences agree with each other"
    )
    assert d["look_at"] == f"{engine}: where it computes db3 = Σ over the batch of dZ3"
    assert "worst element db3[0]: mean_bias=" in printed
    assert "who is wrong: mean_bias is wrong: torch, jax and finite differences agree" in printed
    assert f"look at: {engine}: where it computes db3" in printed
    assert [k for _, k in keys_and_strings(report) if k == "scratch"] == []


@pytest.mark.torch
def test_a_plugged_engines_arbitration_keeps_the_schemas_path_whole(tmp_path, monkeypatch):
    """A tensor outside the trace schema is named with the schema's file: it was garbled into
    "(mean_bias:make_engine/trace_schema.py)" when the explanation's "scratch" was replaced."""
    sound = "return trace"
    engine = _copy(
        tmp_path, monkeypatch, "misspelt", sound, "return {**trace, 'dw1': trace['dW1']}"
    )
    out = tmp_path / "r"
    _main(["run", *SMALL, "--engines", "torch", "--engine", engine, "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["first_divergence"]["tensor"] == "dw1"
    explanation = report["arbitration"]["explanation"]
    assert explanation.startswith("misspelt is wrong: not a name of the trace schema")
    assert "(scratch/trace_schema.py)" in explanation and "make_engine/" not in explanation


RECORDED = Path(__file__).parents[2] / "comparisons" / "recorded"


@pytest.mark.parametrize(
    ("args", "engines", "headline"),
    [
        (["gradcheck", *SMALL], ["layered_mlp", "finite differences"], "AGREE: backprop"),
        (
            ["check", "--recorded", str(RECORDED)],
            ["layered_mlp", "torch", "jax"],
            "AGREE: layered_mlp agrees with torch, jax as recorded",
        ),
    ],
    ids=["gradcheck", "check-recorded"],
)
def test_every_mode_without_a_framework_names_a_plugged_engine(tmp_path, args, engines, headline):
    out = tmp_path / "r"
    printed = _main([*args, "--engine", ENGINE, "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["engines"] == engines and report["under_test"]["name"] == "layered_mlp"
    assert [k for _, k in keys_and_strings(report) if k == "scratch"] == []
    assert printed.startswith(headline)
    assert "scratch" not in (out / "report.md").read_text().replace("scratch/", "").replace(
        "scratch's batching function", ""
    )


@pytest.mark.torch
def test_a_plugged_engines_non_finite_value_is_named_as_its_own(tmp_path, monkeypatch):
    from examples.layered_mlp import LayeredMLP

    class Poisoned(LayeredMLP):
        def step(self, X, Y, masks=None):
            trace = super().step(X, Y, masks)
            Z1 = trace["Z1"].copy()
            Z1[0, 0] = float("nan")
            return {**trace, "Z1": Z1}

    module = types.ModuleType("poisoned_engine")
    module.make = Poisoned
    monkeypatch.setitem(sys.modules, "poisoned_engine", module)
    out = tmp_path / "r"
    printed = _main(
        ["run", *SMALL, "--engines", "torch", "--engine", "poisoned_engine:make", "--out", str(out)]
    )
    report = json.loads((out / "report.json").read_text())
    problem = report["first_divergence"]["problem"]
    assert problem.startswith("poisoned_engine has nan at [0, 0] where torch has ")
    assert report["arbitration"]["explanation"] == f"poisoned_engine is wrong: {problem}"
    assert f"  {problem}" in printed
