"""The report folder: --out is ours or empty, and the swap leaves the complete old report or
the complete new one whatever kills the writer and wherever (kill points are injected, not
timed), stale staging folders are removed, concurrent writers both end cleanly; and report.md
escapes what could break its tables or become markup."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from comparisons import cli
from comparisons.progress import Terminated
from comparisons.report import atomic_folder as af
from comparisons.run.interrupts import signals_recorded
from tests.child import ROOT, child_env

RENDERERS = {"report.md": lambda r: f"# {r['label']}\n" * 200}  # big enough to take a while
# Every kill point of a write over an existing report, in order, for each way to swap; the
# report in --out must be the old one up to the swap and the new one from it on.
STEPS = {
    "exchange": ["staging", "written", "marked", "locked", "exchanged", "removed"],
    "renames": ["staging", "written", "marked", "locked", "moved-aside", "moved-in", "removed"],
}
SWAP_STEP = {"exchange": "exchanged", "renames": "moved-in"}
KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from comparisons.report import atomic_folder as af
from tests.child import ROOT, child_env
out, label, step, mode = sys.argv[1:]
if mode == "renames":
    af._renameat2 = lambda: None
af._kill_point = lambda name: os.kill(os.getpid(), signal.SIGKILL) if name == step else None
af.write_report_folder({"label": label}, Path(out), {"report.md": lambda r: f"# {label}\\n" * 200})
"""


def write(out: Path, label: str) -> Path:
    return af.write_report_folder({"label": label}, out, RENDERERS)


def report_in(out: Path) -> str | None:
    """The label of the complete report in ``out``; None if there is none. A folder that is
    anything but one complete report fails the test."""
    if not out.exists():
        return None
    assert sorted(p.name for p in out.iterdir()) == [af.MARKER, "report.json", "report.md"]
    label = json.loads((out / "report.json").read_text(encoding="utf-8"))["label"]
    assert (out / "report.md").read_text(encoding="utf-8") == RENDERERS["report.md"](
        {"label": label}
    )
    assert json.loads((out / af.MARKER).read_text())["files"] == ["report.json", "report.md"]
    return label


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name != out.name)


def skip_without_exchange(folder: Path) -> None:
    """Skip where this system or file system cannot exchange two names atomically."""
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    try:
        af._exchange(folder / "a", folder / "b")
    except af._NoExchange:
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    finally:
        (folder / "a").rmdir()
        (folder / "b").rmdir()


@pytest.fixture
def exchange_mode(request, monkeypatch, tmp_path):
    if request.param == "renames":
        monkeypatch.setattr(af, "_renameat2", lambda: None)
    else:
        skip_without_exchange(tmp_path)
    return request.param


def _kills(mode: str) -> list[tuple[str, str]]:
    return [(mode, step) for step in STEPS[mode]]


@pytest.mark.parametrize(("mode", "step"), _kills("exchange") + _kills("renames"))
def test_a_kill_at_any_step_of_the_swap_leaves_the_old_report_or_the_new(tmp_path, mode, step):
    if mode == "exchange":
        skip_without_exchange(tmp_path)
    out = tmp_path / "out"
    write(out, "old")
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(out), "new", step, mode], cwd=ROOT, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    expected = "new" if STEPS[mode].index(step) >= STEPS[mode].index(SWAP_STEP[mode]) else "old"
    if (mode, step) == ("renames", "moved-aside"):  # the one window of the two renames:
        assert report_in(out) is None  # --out is missing, the old report lies beside it
        assert any(".out.old-" in name for name in leftovers(out))
    else:
        assert report_in(out) == expected
    af.prepare_out_folder(out)  # what the next run does first
    assert report_in(out) == expected
    write(out, "next")
    assert report_in(out) == "next" and leftovers(out) == []  # the stale folders are gone


@pytest.mark.parametrize("exchange_mode", ["exchange", "renames"], indirect=True)
@pytest.mark.parametrize("error", [KeyboardInterrupt, Terminated, RuntimeError])
def test_an_exception_at_any_step_leaves_the_old_report_or_the_new(
    tmp_path, monkeypatch, exchange_mode, error
):
    out = tmp_path / "out"
    steps = STEPS[exchange_mode]
    for i, step in enumerate(steps):
        write(out, "old")

        def fail(name, step=step):
            if name == step:
                raise error

        monkeypatch.setattr(af, "_kill_point", fail)
        with pytest.raises(error):
            write(out, "new")
        monkeypatch.setattr(af, "_kill_point", None)
        swapped = i >= steps.index(SWAP_STEP[exchange_mode])
        assert report_in(out) == ("new" if swapped else "old"), step
        if not swapped:
            assert leftovers(out) == [], step  # the partial folder was removed at once


@pytest.mark.parametrize("step", ["staging", "written", "marked", "locked", "renamed"])
def test_the_first_report_is_all_there_or_not_at_all(tmp_path, monkeypatch, step):
    out = tmp_path / "new" / "out"

    def fail(name):
        if name == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(af, "_kill_point", fail)
    with pytest.raises(KeyboardInterrupt):
        write(out, "first")
    assert report_in(out) == ("first" if step == "renamed" else None)
    assert leftovers(out) == []


def _main_thread_only():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be set in the main thread")


@pytest.mark.parametrize(("step", "swapped"), [("written", False), ("locked", True)])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_swap_stops_it_and_during_the_swap_waits_for_it(
    tmp_path, monkeypatch, step, swapped, signum
):
    _main_thread_only()
    out = tmp_path / "out"
    write(out, "old")
    monkeypatch.setattr(
        af, "_kill_point", lambda name: os.kill(os.getpid(), signum) if name == step else None
    )
    expected = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    with signals_recorded(), pytest.raises(expected) as info:
        write(out, "new")
    assert report_in(out) == ("new" if swapped else "old")
    assert getattr(info.value, "report_written", None) == (out if swapped else None)
    assert leftovers(out) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_stale_staging_and_old_folders_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    write(out, "old")
    stale = [tmp_path / ".out.partial-123-0123abcd", tmp_path / ".out.old-9-89abcdef"]
    stale += [tmp_path / ".out.partial-k3x_9qz1", tmp_path / ".out.old-a8b7c6d5"]  # older versions
    live = tmp_path / ".out.partial-456-fedcba98"
    unrelated = [tmp_path / ".out.partial-mine", tmp_path / ".other.partial-1-0123abcd"]
    for folder in [*stale, live, *unrelated]:
        folder.mkdir()
        (folder / "report.json").write_text("{}")
        af._mark(folder, ["report.json"])  # as the tool's own folders are marked
    fd = os.open(live, os.O_RDONLY)
    try:
        assert af._flock(fd, blocking=False)  # as its writer, still running, holds it
        write(out, "new")
    finally:
        os.close(fd)
    assert report_in(out) == "new"
    assert leftovers(out) == sorted(p.name for p in [live, *unrelated])


def test_a_missing_out_is_restored_from_the_old_report_a_kill_left_beside_it(tmp_path):
    out = tmp_path / "out"
    write(out, "old")
    out.rename(tmp_path / ".out.old-77-0123abcd")
    af.prepare_out_folder(out)
    assert report_in(out) == "old" and leftovers(out) == []


def test_a_writer_that_swaps_while_another_is_writing_loses_to_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write(out, "old")

    def other_run_finishes(name):
        if name == "marked":
            monkeypatch.setattr(af, "_kill_point", None)
            write(out, "second")  # starts later, swaps first

    monkeypatch.setattr(af, "_kill_point", other_run_finishes)
    write(out, "first")
    assert report_in(out) == "first" and leftovers(out) == []


def test_a_writer_that_reaches_the_swap_second_waits_for_the_first(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write(out, "old")
    other = threading.Thread(target=write, args=(out, "second"))

    def start_the_other(name):
        if name == "locked" and not other.is_alive():
            other.start()  # it blocks on the parent's lock until this swap is done

    monkeypatch.setattr(af, "_kill_point", start_the_other)
    write(out, "first")
    monkeypatch.setattr(af, "_kill_point", None)
    other.join(timeout=30)
    assert not other.is_alive()
    assert report_in(out) == "second" and leftovers(out) == []


def test_two_processes_writing_one_out_over_and_over_both_end_cleanly(tmp_path):
    out = tmp_path / "out"
    script = (
        "import sys; from pathlib import Path; from comparisons.report import atomic_folder as af\n"
        "for i in range(25):\n"
        "    af.write_report_folder({'label': sys.argv[1]}, Path(sys.argv[2]),\n"
        "        {'report.md': lambda r: f\"# {r['label']}\\n\" * 200})\n"
    )
    runs = [
        subprocess.Popen([sys.executable, "-c", script, label, str(out)], env=child_env(),
                         text=True, stderr=subprocess.PIPE)
        for label in ("first", "second")
    ]  # fmt: skip
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert report_in(out) in ("first", "second") and leftovers(out) == []


def test_the_report_folder_takes_its_mode_from_the_umask(tmp_path):
    script = (
        "import os; from pathlib import Path; from comparisons.report import atomic_folder as af;"
        "os.umask(0o027); af.write_report_folder({}, Path('out'), {'a.md': lambda r: ''})"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=child_env(), check=True)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "out" / "a.md").stat().st_mode & 0o777 == 0o640


def test_comparisons_never_changes_the_process_umask():
    for path in (ROOT / "comparisons").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert "umask" not in names, path


@pytest.mark.parametrize("litter", [[], [".DS_Store"]])
def test_an_empty_folder_or_one_with_a_file_browsers_litter_is_accepted(tmp_path, litter):
    out = tmp_path / "out"
    out.mkdir()
    for name in litter:
        (out / name).write_bytes(b"\0")
    write(out, "new")
    for name in litter:  # kept: it may hold the user's settings (test_out_folder_ownership.py)
        assert (out / name).read_bytes() == b"\0"
        (out / name).unlink()
    assert report_in(out) == "new"


# --- report.md ----------------------------------------------------------------------------


def _tables(markdown: str) -> list[list[str]]:
    """Each table of a Markdown document: its lines."""
    tables, current = [], []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_pipes_in_cells_and_html_from_the_environment_are_escaped_in_report_md(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("comparisons.report.environment._cpu_model", lambda: "<img src=x>")
    monkeypatch.setenv("OMP_NUM_THREADS", "<script>alert(1)</script>|")
    out = tmp_path / "out"
    small = ["--set", "dataset=synthetic", "--set", "synthetic_rows=12", "--set", "epochs=1"]
    assert cli.main(["run", *small, "--engines", "scratch", "--out", str(out), "--quiet"]) == 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "<img" not in markdown and "<script" not in markdown
    assert "&lt;img src=x&gt;" in markdown
    tables = _tables(markdown)
    assert tables and any("max\\|" in line or "\\|diff\\|" in line for t in tables for line in t)
    for table in tables:  # every row has as many cells as the header: no pipe split a cell
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table}
        assert len(widths) == 1, table
