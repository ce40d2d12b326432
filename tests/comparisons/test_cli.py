"""The command line: exit statuses, the report folder, determinism, and safe output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comparisons import cli
from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.report import atomic_folder
from comparisons.report.content import VOLATILE
from tests.child import child_env

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


def test_run_writes_the_report_files_with_the_contract_fields(tmp_path, capsys):
    code, out = run(tmp_path, *SCRATCH_ONLY)
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        atomic_folder.MARKER,
        "metrics.csv",
        "report.html",
        "report.json",
        "report.md",
        "steps.csv",
    ]
    report = load(out)
    assert CONTRACT_FIELDS <= set(report)
    assert report["schema_version"] == 2 and report["verdict"] == "agree"
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
    assert reports[0] == reports[1], differences(*reports)


def differences(a, b, where: str = "") -> list[str]:
    """Where two JSON values differ, as dotted paths with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [*a, *(k for k in b if k not in a)]
        return [d for k in keys for d in differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in differences(x, y, f"{where}[{i}]")
        ]
    return [] if a == b else [f"{where}: {a!r:.80} != {b!r:.80}"]


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
        (["--engines", "pytorch"], "error: engines: unknown value 'pytorch'; choose one of"),
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


@pytest.mark.torch
@pytest.mark.parametrize("command", ["run", "drift"])
def test_device_gpu_where_torch_sees_none_exits_2_in_one_line(
    tmp_path, capsys, monkeypatch, command
):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI, on any machine
    out = tmp_path / "out"
    argv = [command, *SMALL, "--engines", "scratch,torch", "--device", "gpu", "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device gpu: device 'cuda': this torch sees no CUDA GPU")
    assert "leave --device out" in err and err.count("\n") == 1
    assert not out.exists()


def test_out_over_an_old_report_replaces_it_whole(tmp_path):
    code, out = run(tmp_path, *SCRATCH_ONLY, "--set", "seed=1")
    assert code == 0 and load(out)["spec"]["seed"] == 1
    code, _ = run(tmp_path, *SCRATCH_ONLY, "--set", "seed=2")
    assert code == 0 and load(out)["spec"]["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial or old folders left


def test_out_holding_a_file_this_tool_did_not_write_is_refused_before_the_run(tmp_path, capsys):
    code, out = run(tmp_path, *SCRATCH_ONLY)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _ = run(tmp_path, *SCRATCH_ONLY)
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: --out {out} holds files this tool did not write (notes.txt), and the report "
        "folder is replaced as a whole; name a new folder for the report, e.g. reports/run\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("command", ["run", "drift", "gradcheck", "check", "faults", "bench"])
def test_each_command_writes_to_its_own_default_folder(command):
    args = cli.build_parser().parse_args([command])
    assert args.out == Path("reports") / command


def test_gradcheck_checks_the_steps_the_run_has_by_default_and_refuses_more(tmp_path, capsys):
    out = tmp_path / "g"
    assert cli.main(["gradcheck", *SMALL, "--out", str(out), "--quiet"]) == 0  # a 1-step run
    assert len(load(out)["per_step"]) == 1
    assert cli.main(["gradcheck", *SMALL, "--out", str(out), "--steps", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: --steps: this run has 1 step, so --steps")


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


@pytest.mark.parametrize(("signal_name", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_during_the_run_writes_nothing_and_exits_130_or_143(
    tmp_path, monkeypatch, capsys, signal_name, code
):
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")
    _, out = run(tmp_path, *SCRATCH_ONLY)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def stop(*args, **kwargs):
        os.kill(os.getpid(), getattr(signal, signal_name))
        raise AssertionError("the signal should have stopped the run")

    monkeypatch.setattr("comparisons.modes.lockstep.lockstep", stop)
    assert run(tmp_path, *SCRATCH_ONLY)[0] == code
    assert capsys.readouterr().err == (
        f"interrupted ({signal_name}): no report was written; {out} is as it was\n"
    )
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
    assert "--out" in text or command in ("train", "liberror", "contract")  # no report folder


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
    """The README's main job: the default run agrees, with every engine's accuracies; as on
    a machine of two CPUs, PyTorch in a worker process (the suite's default is one process)."""
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(occupancy_dir))
    out = tmp_path / "latest"
    assert cli.main(["run", "--out", str(out), "--quiet", "--jobs", "2"]) == 0
    report = load(out)
    assert report["verdict"] == "agree"
    for engine in ("scratch", "torch", "jax"):
        assert report["metrics"][engine]["test"]["accuracy"] >= 0.975
        assert report["metrics"][engine]["test2"]["accuracy"] >= 0.985


def test_a_message_after_a_progress_bar_starts_on_its_own_line():
    import io

    from comparisons.progress import Progress, end_line

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    Progress(10, "lockstep", stream=stream)(3)
    end_line(stream)
    end_line(stream)  # once only
    assert stream.getvalue() == "\rlockstep [############------------------] 4/10 steps\n"


def test_a_network_too_big_for_the_memory_fails_fast_without_allocating_it(tmp_path):
    """Under a 2 GiB address-space limit, the [20000, 20000] network (about 30 GiB) is
    refused by the estimate: it never gets to allocate, so it cannot fail any other way."""
    limited = (  # the limit is set in the child itself: a preexec_fn would fork a JAX process
        "import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30));"
        "sys.argv = ['comparisons', 'train', '--set', 'hidden=[20000,20000]'];"
        "runpy.run_module('comparisons', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", limited],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: hidden: this run needs about 29.")
    assert "2.0 GiB is available" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.torch
def test_run_prints_its_accuracies_and_the_report_opens_with_what_was_compared(tmp_path, capsys):
    """After the verdict, one line per engine with its final accuracy on every split; the
    report's first sentence says what lockstep compared and how."""
    out = tmp_path / "out"
    assert cli.main(["run", *SMALL, "--engines", "scratch,torch", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    report = load(out)
    splits = list(report["metrics"]["scratch"])
    assert printed[1] == f"final accuracy ({', '.join(splits)}):"
    for line, engine in zip(printed[2:4], ("scratch", "torch"), strict=True):
        shares = [f"{100 * report['metrics'][engine][s]['accuracy']:.2f}%" for s in splits]
        assert line.split() == [engine, *shares]
    assert printed[4].startswith("report: ")
    steps = report["schedule"]["steps"]
    for name in ("report.md", "report.html"):
        top = (out / name).read_text(encoding="utf-8").split("AGREE")[0]
        assert (
            f"compares scratch with torch in lockstep: before each of the {steps} training "
            "steps every reference is loaded with scratch" in top.replace("&#x27;", "'")
        ), name


def test_a_quiet_run_prints_only_the_verdict_lines(tmp_path, capsys):
    code, _ = run(tmp_path, *SCRATCH_ONLY)
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("AGREE: ")
