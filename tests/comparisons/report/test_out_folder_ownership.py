"""The tool deletes or moves only what it wrote: its staging and old folders are recognised by
the marker written into them first (or by being empty), never by their names alone; a file
browser's file in ``--out`` moves into the new report; a refusal never advises emptying a
folder that is not the tool's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comparisons import cli
from comparisons.report import atomic_folder as af


def write(out: Path, label: str) -> Path:
    return af.write_report_folder({"label": label}, out, {"report.md": lambda r: r["label"]})


def _users_folder(path: Path) -> dict[str, bytes]:
    path.mkdir()
    (path / "thesis.tex").write_bytes(b"\\section{mine}")
    return {"thesis.tex": b"\\section{mine}"}


@pytest.mark.parametrize("kind", ["partial", "old"])
def test_a_users_folder_named_like_a_leftover_beside_out_is_left_alone(tmp_path, kind):
    out = tmp_path / "stage"
    write(out, "old")
    users = tmp_path / f".stage.{kind}-1-deadbeef"
    content = _users_folder(users)
    write(out, "new")
    assert {p.name: p.read_bytes() for p in users.iterdir()} == content


def test_a_users_folder_named_like_an_old_report_is_not_moved_into_a_missing_out(tmp_path):
    out = tmp_path / "restore"
    users = tmp_path / ".restore.old-1-deadbeef"
    content = _users_folder(users)
    af.prepare_out_folder(out)
    write(out, "new")
    assert {p.name: p.read_bytes() for p in users.iterdir()} == content
    assert (out / "report.md").read_text() == "new"


def test_the_tools_own_leftovers_are_still_removed_and_an_empty_one_too(tmp_path):
    out = tmp_path / "out"
    write(out, "old")
    marked, empty = tmp_path / ".out.partial-1-0123abcd", tmp_path / ".out.old-2-89abcdef"
    marked.mkdir()
    af._mark(marked, [])  # a staging folder killed right after its marker
    empty.mkdir()  # killed between mkdir and the marker
    write(out, "new")
    assert not marked.exists() and not empty.exists()


def test_the_staging_folder_holds_its_marker_before_any_report_file(tmp_path, monkeypatch):
    seen = {}

    def look(name):
        if name == "staging":
            (staging,) = tmp_path.glob(".out.partial-*")
            seen["files"] = sorted(p.name for p in staging.iterdir())

    monkeypatch.setattr(af, "_kill_point", look)
    write(tmp_path / "out", "new")
    assert seen["files"] == [af.MARKER]


@pytest.mark.parametrize("earlier", [False, True], ids=["empty-out", "report-out"])
def test_a_users_ds_store_in_out_is_kept_not_deleted(tmp_path, earlier):
    out = tmp_path / "out"
    if earlier:
        write(out, "old")
    else:
        out.mkdir()
    (out / ".DS_Store").write_bytes(b"the user's Finder settings")
    write(out, "new")
    assert (out / ".DS_Store").read_bytes() == b"the user's Finder settings"
    assert (out / "report.md").read_text() == "new"


def test_a_folder_that_is_not_the_tools_is_refused_without_advice_to_empty_it(
    tmp_path, capsys, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    code = cli.main(["gradcheck", "--set", "dataset=synthetic", "--out", str(home)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "empty" not in err and "holds files this tool did not write (notes.txt)" in err
    assert os.listdir(home) == ["notes.txt"]
