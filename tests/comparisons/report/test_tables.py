"""steps.csv and metrics.csv beside report.json: every per-step figure and every final
metric, as pandas (or a spreadsheet) reads them back."""

from __future__ import annotations

import json
import math
import warnings

import pandas as pd
import pytest

from comparisons import cli
from comparisons.report.atomic_folder import json_text
from comparisons.report.csv_files import metrics_csv, steps_csv
from comparisons.report.text import number

SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=40", "--set", "epochs=2"]


def read_csv(path) -> pd.DataFrame:
    """The table to the last bit. pandas' default float parser may round the 17th digit up
    to pandas 3.0 (1 value in 2.5 of random doubles, with 2.1 and 3.0) and is exact from the
    release that deprecates ``float_precision`` (pandas-dev/pandas#64666: every mode is then
    the one exact parser); ``round_trip`` is exact in all of them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*float_precision.*deprecated")
        return pd.read_csv(path, float_precision="round_trip")


def run(tmp_path, command: str, *args: str) -> tuple[dict, object]:
    out = tmp_path / command
    cli.main([command, *SMALL, "--engines", "scratch", "--out", str(out), "--quiet", *args])
    return json.loads((out / "report.json").read_text(encoding="utf-8")), out


@pytest.mark.parametrize("command", ["run", "drift", "gradcheck"])
def test_every_per_step_figure_is_a_column_of_steps_csv(tmp_path, command):
    report, out = run(tmp_path, command)
    table = read_csv(out / "steps.csv")
    assert len(table) == len(report["per_step"]) > 0
    for row, step in zip(table.to_dict("records"), report["per_step"], strict=True):
        for key, value in step.items():
            if isinstance(value, dict):  # nested figures: one column per leaf
                for inner, figure in value.items():
                    if not isinstance(figure, dict):
                        assert row[f"{key}.{inner}"] == pytest.approx(number(figure), abs=0)
            else:
                assert row[key] == pytest.approx(number(value), abs=0)


def test_the_final_metrics_are_metrics_csv(tmp_path):
    report, out = run(tmp_path, "run")
    table = read_csv(out / "metrics.csv")
    assert list(table.columns[:2]) == ["engine", "split"]
    assert len(table) == sum(len(splits) for splits in report["metrics"].values())
    for row in table.to_dict("records"):
        expected = report["metrics"][row["engine"]][row["split"]]
        assert row["accuracy"] == expected["accuracy"]


def test_non_finite_figures_read_back_as_floats(tmp_path):
    # as report.json writes them (strings), and as a run holds them (floats)
    per_step = [
        {"step": 0, "epoch": 0, "loss": {"scratch": "NaN", "torch": float("inf")}},
        {"step": 1, "epoch": 0, "loss": {"scratch": "-Infinity", "torch": 0.5}},
    ]
    (tmp_path / "steps.csv").write_text(steps_csv({"per_step": per_step}), encoding="utf-8")
    table = pd.read_csv(tmp_path / "steps.csv")
    assert math.isnan(table["loss.scratch"][0]) and table["loss.torch"][0] == math.inf
    assert table["loss.scratch"][1] == -math.inf and table["loss.torch"][1] == 0.5


def test_a_diverged_run_has_steps_but_no_metrics_csv(tmp_path):
    report, out = run(tmp_path, "run", "--set", "lr=inf")
    assert report["verdict"] == "diverged"
    assert (out / "steps.csv").exists() and not (out / "metrics.csv").exists()


def test_the_tables_of_a_report_read_back_from_json_are_the_same(tmp_path):
    report, out = run(tmp_path, "run")
    assert steps_csv(report) == (out / "steps.csv").read_text(encoding="utf-8")
    assert metrics_csv(report) == (out / "metrics.csv").read_text(encoding="utf-8")


def test_the_walkthrough_of_a_dropout_run_shows_each_mask_and_what_it_dropped(tmp_path):
    """Each hidden layer's mask and dropped-out output follow its activation; the mask's
    row says how many units the step dropped (counted here from data/dropout.py's draw)."""
    from data.dropout import keep_masks

    report, out = run(tmp_path, "run", "--set", "dropout=0.5")
    rows = {entry["tensor"]: entry for entry in report["walkthrough"]}
    assert list(rows)[:8] == ["Z1", "A1", "M1", "D1", "Z2", "A2", "M2", "D2"]
    masks = keep_masks(0, 0, 40, (8, 4), 0.5, "float64")  # the spec's seed; one batch of 40
    for l in (1, 2):
        dropped = int((masks[f"M{l}"] == 0).sum())
        assert f"({dropped} of {masks[f'M{l}'].size} units dropped" in rows[f"M{l}"]["equation"]
    assert rows["Z2"]["equation"] == "Z2 = D1 @ W2 + b2"
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "units dropped at this step" in markdown and "dropout p = 0.5" in markdown


def test_a_batch_normalized_run_says_so_and_walks_through_its_statistics(tmp_path):
    report, out = run(tmp_path, "run", "--set", "batch_norm=true", "--set", "bn_momentum=0.25")
    rows = [entry["tensor"] for entry in report["walkthrough"]]
    assert rows[:8] == ["Z1", "mu1", "var1", "running_mean1", "running_var1", "xhat1", "N1", "A1"]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "batch normalization (momentum 0.25, ε 1e-05)" in markdown
    assert "`Z1 = X @ W1`" in markdown and "`A1 = sigmoid(N1)`" in markdown


def test_report_json_has_one_line_per_step(tmp_path):
    report, out = run(tmp_path, "run")
    lines = (out / "report.json").read_text(encoding="utf-8").splitlines()
    rows = [line for line in lines if line.lstrip().startswith('{"step": ')]
    assert [json.loads(row.rstrip(","))["step"] for row in rows] == [
        s["step"] for s in report["per_step"]
    ]
    assert len(report["per_step"]) > 1


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"a": [], "b": [{"x": 1}], "c": [{"x": 1}, {"y": [1, 2]}], "d": {"e": [{"f": "é"}] * 2}},
        {"rows": [{"x": "NaN"}, {}], "mixed": [{"x": 1}, 2], "s": "line\nbreak"},
    ],
)
def test_json_text_is_json_of_the_same_document(document):
    assert json.loads(json_text(document)) == document
