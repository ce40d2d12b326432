"""The command line: exit statuses, the report folder, determinism, and safe output."""

from __future__ import annotations

import json

import pytest

from comparisons import cli
from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.report import atomic_folder
from comparisons.report.model import VOLATILE

SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=12", "--set", "epochs=1"]
SCRATCH_ONLY = ["--engines", "scratch"]

CONTRACT_FIELDS = {
    "schema_version",
    "verdict",
    "spec",
    "dataset",
    "schedule_sha256",
    "environment",
    "engines",
    "tolerances",
    "first_divergence",
    "per_tensor",
    "per_step",
    "metrics",
}


def run(tmp_path, *args, name="out"):
    out = tmp_path / name
    code = cli.main(["run", *SMALL, "--out", str(out), "--quiet", *args])
    return code, out


def load(out):
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_run_writes_the_three_files_with_the_contract_fields(tmp_path, capsys):
    code, out = run(tmp_path, *SCRATCH_ONLY)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    report = load(out)
    assert CONTRACT_FIELDS <= set(report)
    assert report["schema_version"] == 1 and report["verdict"] == "agree"
    assert capsys.readouterr().out.startswith("AGREE: ")
    assert report["metrics"]["scratch"].keys() == {"train", "test"}


@pytest.mark.torch
@pytest.mark.jax
def test_two_runs_differ_only_in_timings_and_timestamps(tmp_path):
    reports = []
    for name in ("first", "second"):
        code, out = run(tmp_path, "--set", "optimizer=adam", "--set", "lr=0.01", name=name)
        assert code == 0
        reports.append({k: v for k, v in load(out).items() if k not in VOLATILE})
    assert reports[0]["engines"] == ["scratch", "torch", "jax"]
    assert reports[0] == reports[1]


@pytest.mark.torch
def test_a_broken_scratch_exits_1_and_names_the_tensor(tmp_path, capsys):
    fault = FAULTS_BY_NAME["bias-gradient-one-row"]
    with fault.patch():
        code, out = run(tmp_path, "--engines", "scratch,torch")
    report = load(out)
    assert code == 1 and report["verdict"] == "disagree"
    assert report["first_divergence"]["tensor"] == fault.expected_tensor
    first_lines = capsys.readouterr().out.splitlines()[:2]
    assert first_lines[0].startswith("DISAGREE")
    assert f"{fault.expected_tensor} (gradient, layer 3)" in first_lines[1]
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert markdown.index(fault.expected_tensor) < markdown.index("## Run")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "colour=red"], "error: colour: unknown key"),
        (["--set", "epochs=two"], "error: epochs: expected an integer; got 'two'"),
        (["--set", "batch_size=-5"], "error: batch_size: must be >= 1; got -5"),
        (["--set", "activation=swish"], "error: activation: unknown value 'swish'"),
        (["--engines", "torch"], "error: engines: must include 'scratch'"),
    ],
)
def test_bad_configurations_exit_2_with_one_line_naming_the_key(tmp_path, capsys, args, message):
    code, out = run(tmp_path, *args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1
    assert not out.exists()


def test_a_bad_config_file_exits_2(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("batch_size = -1\n", encoding="utf-8")
    code, _ = run(tmp_path, "--config", str(config))
    assert code == 2
    assert "batch_size: must be >= 1" in capsys.readouterr().err


def test_out_over_an_old_report_replaces_it_whole(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run", encoding="utf-8")
    code, _ = run(tmp_path, *SCRATCH_ONLY)
    assert code == 0
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial or old folders left


@pytest.mark.parametrize("error", [RuntimeError("renderer crashed"), KeyboardInterrupt()])
def test_a_crash_while_writing_leaves_the_old_report_and_no_partial_folder(
    tmp_path, monkeypatch, error
):
    _, out = run(tmp_path, *SCRATCH_ONLY)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(report):
        raise error

    monkeypatch.setattr("comparisons.report.markdown.render_markdown", crash)
    with pytest.raises(type(error)):
        atomic_folder.write_report_folder({"verdict": "agree"}, out, {"report.md": crash})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_ctrl_c_during_the_run_writes_nothing(tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("comparisons.modes.lockstep.lockstep", interrupt)
    code, out = run(tmp_path, *SCRATCH_ONLY)
    assert code == 130 and not out.exists()
    assert "no report was written" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert cli.COMMANDS[command][3].split()[0] in text  # the description
    assert "--out" in text or command == "train"


def test_gradcheck_agrees_and_refuses_float32(tmp_path, capsys):
    out = tmp_path / "g"
    args = ["gradcheck", *SMALL, "--set", "batch_size=5", "--out", str(out), "--quiet"]
    assert cli.main([*args, "--steps", "2"]) == 0
    assert load(out)["verdict"] == "agree" and len(load(out)["per_step"]) == 2
    assert cli.main(["gradcheck", *SMALL, "--dtype", "float32", "--out", str(out)]) == 2
    assert "gradcheck needs float64" in capsys.readouterr().err


def test_gradcheck_catches_a_fault_without_any_framework(tmp_path):
    out = tmp_path / "g"
    fault = FAULTS_BY_NAME["transposed-weight-in-error-term"]
    with fault.patch():
        code = cli.main(
            ["gradcheck", *SMALL, "--set", "hidden=[4, 4]", "--out", str(out), "--quiet"]
        )
    assert code == 1
    assert load(out)["first_divergence"]["tensor"] == fault.expected_tensor


@pytest.mark.realdata
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.slow
def test_the_main_job_on_occupancy(occupancy_dir, tmp_path, monkeypatch):
    """The README's main job: the default run agrees, with every engine's accuracies."""
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(occupancy_dir))
    out = tmp_path / "latest"
    assert cli.main(["run", "--out", str(out), "--quiet"]) == 0
    report = load(out)
    assert report["verdict"] == "agree"
    for engine in ("scratch", "torch", "jax"):
        assert report["metrics"][engine]["test"]["accuracy"] >= 0.975
        assert report["metrics"][engine]["test2"]["accuracy"] >= 0.985
