"""Inputs written outside the project, as a probe of the tool tried them: each is bad input
(exit 2, one line that names the key, file or engine, no traceback), or, for engine code that
exits inside a step, an ERROR verdict; never the engine's own exit status, a hang, a
traceback or NumPy's warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from comparisons import cli
from tests.child import child_env

SYNTHETIC = ["--set", "dataset=synthetic", "--set", "synthetic_rows=12", "--set", "epochs=1"]


def _bad_input(capsys, argv: list[str]) -> str:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# --- memory: every allocation that scales with a key is estimated, and the key is named -----


def little_memory(monkeypatch, gib: int = 4) -> None:
    monkeypatch.setattr("comparisons.run.inputs.available_memory", lambda: gib << 30)


def test_a_million_synthetic_classes_is_refused_by_the_estimate_naming_the_key(
    tmp_path, monkeypatch, capsys
):
    """np.eye(1,000,000) was 7.28 TiB, counted by no estimate: a MemoryError, exit 4."""
    little_memory(monkeypatch)
    monkeypatch.chdir(tmp_path)
    err = _bad_input(capsys, ["train", "--set", "dataset=synthetic", "--set",
                              "synthetic_classes=1000000"])  # fmt: skip
    assert err.startswith("error: synthetic_classes: this run needs about"), err
    assert "use fewer synthetic_classes" in err


def test_the_one_hot_targets_of_many_classes_take_rows_times_classes_not_classes_squared():
    from data.synthetic import make_synthetic

    _, Y = make_synthetic(3, n_classes=200_000)  # an identity of 200,000² would be 320 GB
    assert Y.shape == (3, 200_000) and (Y.sum(axis=1) == 1).all()


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ("hidden=[100000000]", "hidden"),
        ("synthetic_rows=100000000", "synthetic_rows"),
        ("synthetic_features=100000000", "synthetic_features"),
        ("epochs=1000000000", "epochs"),
    ],
)
def test_the_memory_refusal_names_the_key_that_causes_it(
    tmp_path, monkeypatch, capsys, assignment, key
):
    little_memory(monkeypatch)
    monkeypatch.chdir(tmp_path)
    err = _bad_input(capsys, ["train", "--set", "dataset=synthetic", "--set", assignment])
    assert err.startswith(f"error: {key}: this run needs about"), err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--sizes", "5-100000000-1:50"], "--sizes"),
        (["--sizes", "5-8-1:100000000000"], "--sizes"),
        (["--oracle-widths", "100000000", "--engines", "scratch,torch"], "--oracle-widths"),
    ],
)
def test_bench_sizes_beyond_the_memory_are_refused_before_measuring(
    tmp_path, monkeypatch, capsys, argv, option
):
    little_memory(monkeypatch)
    if option == "--oracle-widths":
        monkeypatch.setattr("comparisons.bench.command.installed", lambda *names: True)
    err = _bad_input(capsys, ["bench", "--quick", "--out", str(tmp_path / "b"), *argv])
    assert err.startswith(f"error: {option}: "), err
    assert "of memory" in err and not (tmp_path / "b").exists()


# --- bench --compare: the guarded reader ----------------------------------------------------


def _nested(path):
    path.write_text("[" * 100_000 + "]" * 100_000)


def _fifo(path):
    os.mkfifo(path)


def _dev_zero(path):
    os.symlink("/dev/zero", path)


def _wrong_targets(path):
    path.write_text(json.dumps({"targets": [{"id": "a", "value": "fast", "figure": "x"}]}))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_nested, "nested 100000 deep"),
        (_fifo, "not a regular file"),
        (_dev_zero, "not a regular file"),
        (_wrong_targets, "is not a bench.json (a target lacks"),
    ],
    ids=["nested", "fifo", "dev-zero", "targets-of-the-wrong-type"],
)
def test_bench_compare_on_a_file_that_is_not_a_bench_json_is_bad_input(
    tmp_path, capsys, make, message
):
    previous = tmp_path / "bench.json"
    make(previous)
    err = _bad_input(
        capsys, ["bench", "--quick", "--compare", str(previous), "--out", str(tmp_path / "b")]
    )
    assert err.startswith("error: --compare: ") and message in err, err


# --- engine code: contained -----------------------------------------------------------------

SOUND = """
from comparisons.run.engines import ScratchEngine

class Engine(ScratchEngine):
    pass

def make(mlp, optimizer, dtype):
    return Engine(mlp, optimizer, dtype)
"""


def _engine_module(tmp_path, monkeypatch, source: str) -> str:
    name = f"probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return name


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import sys\nsys.exit(3)\n" + SOUND, "importing {name!r} called sys.exit(3)"),
        (SOUND + "\ndef make(*args):\n    raise SystemExit(5)\n", "the factory called sys.exit(5)"),
        (
            "def __getattr__(name):\n    raise RuntimeError('no ' + name)\n",
            "looking up 'make' in {name!r} raised RuntimeError: no make",
        ),
    ],
    ids=["exit-at-import", "exit-in-the-factory", "getattr-raises"],
)
def test_engine_code_that_exits_or_raises_while_loaded_is_bad_input_naming_it(
    tmp_path, monkeypatch, capsys, source, message
):
    name = _engine_module(tmp_path, monkeypatch, source)
    err = _bad_input(
        capsys, ["gradcheck", *SYNTHETIC, "--engine", f"{name}:make", "--out", str(tmp_path / "r")]
    )
    assert err.startswith(f"error: --engine {name}:make: "), err
    assert message.format(name=name) in err, err
    assert not (tmp_path / "r").exists()


def test_engine_code_that_exits_in_a_step_is_an_error_verdict(tmp_path, monkeypatch, capsys):
    source = SOUND.replace(
        "    pass", "    def step(self, *args, **kwargs):\n        import sys\n        sys.exit(7)"
    )
    name = _engine_module(tmp_path, monkeypatch, source)
    out = tmp_path / "r"
    code = cli.main(["gradcheck", *SYNTHETIC, "--engine", f"{name}:make", "--out", str(out),
                     "--quiet"])  # fmt: skip
    assert code == 1, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "error"
    assert report["error"]["error"] == "EngineExit"
    assert "step() called sys.exit(7)" in report["error"]["message"]
    assert report["error"]["where"].startswith(f"{name}.py:")


def test_an_engine_module_that_parses_argv_at_import_sees_a_clean_one(
    tmp_path, monkeypatch, capsys
):
    """A course script's argparse at import: with the tool's own argv it would print its
    usage and exit 2; it is given ``[module]``."""
    source = "import argparse\nARGS = argparse.ArgumentParser().parse_args()\n" + SOUND
    name = _engine_module(tmp_path, monkeypatch, source)
    argv = ["gradcheck", *SYNTHETIC, "--engine", f"{name}:make", "--out", str(tmp_path / "r"),
            "--quiet"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["python -m comparisons", *argv])  # as on the command line
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "usage" not in captured.err and captured.err == ""
    assert sys.argv == ["python -m comparisons", *argv]  # put back


# --- NumPy's warnings ------------------------------------------------------------------------


@pytest.mark.parametrize("lr", ["inf", "1e308"])
def test_train_with_a_diverging_rate_prints_one_line_and_no_numpy_warning(tmp_path, lr):
    """Run as a child: in this process the test suite turns warnings into errors."""
    done = subprocess.run(
        [sys.executable, "-m", "comparisons", "train", "--set", "dataset=synthetic",
         "--set", f"lr={lr}", "--quiet"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "RuntimeWarning" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: the loss is "), done.stderr
