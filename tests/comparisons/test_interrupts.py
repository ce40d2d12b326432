"""SIGINT and SIGTERM always stop a run: exit 130 or 143, one line on stderr, the previous
report intact (or, when the signal came after the new one was written, the new one whole and
the line says so), whenever the signal lands: during start-up, loading, any step, the
report's writing. The handler only records the signal (``comparisons/run/interrupts.py``);
an exception raised from it could land in a callback that discards it (JAX's
``_xla_gc_callback`` did, and five of nine SIGTERMs were lost)."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from comparisons import cli
from comparisons.run import interrupts
from comparisons.run.interrupts import Terminated, signals_recorded, stop_if_signalled
from tests.child import child_env

SYNTHETIC = ["--set", "dataset=synthetic", "--set", "epochs=1"]
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
MOMENTS = [n / 10 for n in range(1, 10)]  # of the run's duration, measured first


def _main_thread_only():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _start(cwd: Path, out: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "comparisons", "run", *SYNTHETIC, *args, "--out", out]
    return subprocess.Popen(
        command, cwd=cwd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _finish(run: subprocess.Popen) -> None:
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr


def _judge(run: subprocess.Popen, signum: int, out: Path, before: dict, moment: str) -> None:
    _, stderr = run.communicate(timeout=300)
    where = f"{NAMES[signum]} at {moment}: exit {run.returncode}, stderr {stderr!r}"
    if run.returncode == -signum:
        # Killed by the signal itself: it landed after main() returned, while Python shut
        # down (its handlers are the defaults by then). A shell reports 128 + n, as for the
        # exit status; the work was done, so the report must be the new one, whole (a run
        # killed earlier, by a handler reset mid-run, would leave the old one).
        assert stderr == "", where
        assert _files(out) != before, where
        assert json.loads((out / "report.json").read_text())["verdict"] == "agree", where
    else:
        assert run.returncode == CODES[signum], where
        assert stderr.count("\n") == 1, where
        assert stderr.startswith(f"interrupted ({NAMES[signum]})"), where
        if "after the report was written" in stderr:  # too late to stop it: the new one, whole
            assert json.loads((out / "report.json").read_text())["verdict"] == "agree", where
        else:
            assert _files(out) == before, where
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == [], where


def _reaped(runs: list[subprocess.Popen]) -> None:
    """Whatever an assertion left running is killed and waited for (a run left behind would
    surface in a later test as an unraisable ResourceWarning)."""
    for run in runs:
        if run.poll() is None:
            run.kill()
        run.communicate()


def _duration_of_two_at_once(tmp_path: Path) -> float:
    """Seconds a run takes as the sweep runs it: warm (a first run fills JAX's compilation
    cache, empty in a cold CI) and beside a second one. Measured cold and alone, a moment
    "70% in" fell after a warm run had finished."""
    _finish(_start(tmp_path, "old", "--jobs", "1"))
    start = time.monotonic()
    runs = [_start(tmp_path, f"warm-{n}", "--jobs", "1") for n in range(2)]
    try:
        for run in runs:
            _finish(run)
    finally:
        _reaped(runs)
    for n in range(2):
        shutil.rmtree(tmp_path / f"warm-{n}")
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
def test_sigint_and_sigterm_at_nine_moments_of_a_run_always_stop_it(tmp_path):
    """The run with every reference in this process (JAX's garbage-collection callback is
    where the old handler's exception was lost), signalled at 10%, 20%, … 90% of its
    duration: 130 or 143 every time, the old report intact (or the new one, said so)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    duration = _duration_of_two_at_once(tmp_path)
    before = _files(tmp_path / "old")
    signalled = 0  # runs signalled while they were still running
    for moment in MOMENTS:
        runs = {}
        for signum in CODES:  # both signals at once, each on its own copy of the old report
            cwd = tmp_path / f"{NAMES[signum]}-{moment}"
            cwd.mkdir()
            shutil.copytree(tmp_path / "old", cwd / "out")
            runs[signum] = (_start(cwd, "out", "--jobs", "1"), cwd / "out")
        try:
            time.sleep(moment * duration)
            alive = {signum: run.poll() is None for signum, (run, _) in runs.items()}
            for signum, (run, _) in runs.items():
                if alive[signum]:
                    run.send_signal(signum)
            for signum, (run, out) in runs.items():
                where = f"{moment:.0%} of {duration:.1f} s"
                if alive[signum]:
                    _judge(run, signum, out, before, where)
                    signalled += 1
                else:  # it finished before the moment came: nothing to judge but its exit
                    _finish(run)
        finally:
            _reaped([run for run, _ in runs.values()])
    assert signalled >= 2 * len(MOMENTS) * len(CODES) // 3, "most runs ended before the signal"


@pytest.mark.parametrize("signum", list(CODES), ids=list(NAMES.values()))
def test_a_signal_during_start_up_exits_with_one_line_and_no_traceback(tmp_path, signum):
    """0.3 s in, the command line is still importing: the signal is recorded there (the
    entry point installs the handler first of all) and acted on once main() starts."""
    _finish(_start(tmp_path, "out", "--engines", "scratch"))
    before = _files(tmp_path / "out")
    run = _start(tmp_path, "out", "--engines", "scratch")
    time.sleep(0.3)
    run.send_signal(signum)
    _judge(run, signum, tmp_path / "out", before, "start-up")


@pytest.mark.parametrize("signum", list(CODES), ids=list(NAMES.values()))
def test_a_signal_whose_handler_runs_in_a_callback_that_discards_exceptions_still_stops(
    tmp_path, monkeypatch, capsys, signum
):
    """The signal arrives while Python runs a ``__del__`` (as JAX's garbage-collection
    callback): an exception raised there is discarded; a recorded signal is acted on at the
    next step."""
    _main_thread_only()

    class Swallower:
        def __del__(self):
            os.kill(os.getpid(), signum)  # the handler runs here, inside __del__
            time.sleep(0.01)

    def step_with_garbage(original):
        def step(*args, **kwargs):
            Swallower()
            gc.collect()
            return original(*args, **kwargs)

        return step

    from comparisons.run.engines import ScratchEngine

    monkeypatch.setattr(ScratchEngine, "step", step_with_garbage(ScratchEngine.step))
    out = tmp_path / "out"
    code = cli.main(["run", *SYNTHETIC, "--set", "synthetic_rows=12", "--engines", "scratch",
                     "--out", str(out), "--quiet"])  # fmt: skip
    assert code == CODES[signum]
    assert capsys.readouterr().err == (
        f"interrupted ({NAMES[signum]}): no report was written; {out} is as it was\n"
    )
    assert not out.exists()


def test_the_recorded_signal_raises_at_the_next_boundary_and_a_second_at_once():
    _main_thread_only()
    with signals_recorded():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # delivered, recorded, nothing raised
        assert interrupts.signalled() == signal.SIGTERM
        with pytest.raises(Terminated):
            stop_if_signalled()
        with pytest.raises(Terminated):  # the second: raised by the handler itself
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back
    with signals_recorded():
        assert interrupts.signalled() is None  # an earlier block's signal is forgotten


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("signum", list(CODES), ids=list(NAMES.values()))
def test_a_signal_to_the_whole_group_stops_the_run_and_its_workers_without_a_traceback(
    tmp_path, signum
):
    """Ctrl-C in a terminal signals every process of the group: the references' workers too,
    which ignore SIGINT from their first instant (a worker still importing its framework
    printed a KeyboardInterrupt traceback); the run exits 130 or 143 with one line."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    _finish(_start(tmp_path, "out", "--jobs", "3"))  # cold: fills JAX's compilation cache
    first = time.monotonic()
    _finish(_start(tmp_path, "out", "--jobs", "3"))
    duration = time.monotonic() - first
    before = _files(tmp_path / "out")
    for moment in (0.15, 0.3, 0.6):  # workers starting, importing, replaying
        command = [sys.executable, "-m", "comparisons", "run", *SYNTHETIC, "--jobs", "3",
                   "--out", "out"]  # fmt: skip
        run = subprocess.Popen(
            command, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(moment * duration)
            os.killpg(run.pid, signum)
            _judge(run, signum, tmp_path / "out", before, f"{moment:.0%} (the group)")
        finally:
            _reaped([run])


@pytest.mark.parametrize("command", ["bench", "train"])
def test_commands_without_steps_stop_at_their_own_boundaries(
    tmp_path, monkeypatch, capsys, command
):
    """bench stops between the stages it measures (a torch.compile stage takes ~30 s) and
    train between epochs, instead of going on to the end with the signal recorded."""
    _main_thread_only()
    later = []
    if command == "bench":
        monkeypatch.setattr(
            "comparisons.bench.command.peak",
            lambda dtype: os.kill(os.getpid(), signal.SIGINT) or {"gflops": 1.0},
        )
        monkeypatch.setattr("comparisons.bench.command.time_size", lambda *args: later.append(args))
        argv = ["bench", "--quick", "--quiet", "--oracle-steps", "0", "--out", str(tmp_path / "b")]
    else:
        from comparisons.modes import train

        original = train.accuracy

        def accuracy(*args):
            later.append(args)
            os.kill(os.getpid(), signal.SIGINT)
            return original(*args)

        monkeypatch.setattr(train, "accuracy", accuracy)
        argv = ["train", "--set", "dataset=synthetic", "--quiet"]
    assert cli.main(argv) == 130
    assert capsys.readouterr().err.startswith("interrupted (SIGINT)")
    assert len(later) <= (0 if command == "bench" else 2)  # train: one epoch's splits


def test_stdout_closed_early_exits_141_with_the_report_written(tmp_path):
    """``… | head``: the reader is gone before the verdict line is printed; the report was
    already written, and nothing but the status says so (no BrokenPipeError traceback)."""
    read, write = os.pipe()
    # stdout to a pipe is block-buffered unless PYTHONUNBUFFERED says otherwise: then nothing
    # is written until the buffer is flushed, at exit, where a BrokenPipeError is only
    # "ignored" with a message on stderr
    buffered = {k: v for k, v in child_env().items() if k != "PYTHONUNBUFFERED"}
    run = subprocess.Popen(
        [sys.executable, "-m", "comparisons", "gradcheck", *SYNTHETIC, "--set",
         "synthetic_rows=12", "--out", "out"],
        cwd=tmp_path, env=buffered, stdout=write, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(write)
    os.close(read)  # before the child prints anything: its imports alone take a second
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 141, stderr
    assert stderr == ""
    assert json.loads((tmp_path / "out" / "report.json").read_text())["verdict"] == "agree"
