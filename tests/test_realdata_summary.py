"""A session that skipped the real-data tests ends with a line that says so and how to run them."""

from __future__ import annotations

from types import SimpleNamespace

from data.occupancy_constants import SPLITS
from tests import conftest


class Reporter:
    def __init__(self, skipped_reasons: list[str]):
        self.stats = {
            "skipped": [SimpleNamespace(longrepr=("t.py", 1, r)) for r in skipped_reasons],
            "passed": [SimpleNamespace(longrepr=None)],
        }
        self.lines: list[str] = []

    def write_sep(self, sep, title, **markup):
        self.lines.append(title)

    def write_line(self, line, **markup):
        self.lines.append(line)


def test_skipped_real_data_tests_end_the_session_with_the_command_that_runs_them(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("BACKPROP_ORACLE_CACHE", str(tmp_path))
    reasons = [f"Skipped: {conftest.REALDATA_SKIP}"] * 3 + ["Skipped: needs a CUDA GPU"]
    reporter = Reporter(reasons)
    conftest.realdata_summary(reporter)
    folder = tmp_path / "occupancy"
    assert reporter.lines[0] == "3 real-data tests skipped: OCCUPANCY_DATA_DIR is not set"
    assert "`tox -e report` downloads and verifies the files" in reporter.lines[1]
    assert reporter.lines[1].endswith(f"OCCUPANCY_DATA_DIR={folder} tox")

    folder.mkdir()  # once downloaded, the command names the cache's folder at once
    for name in SPLITS.values():
        (folder / name).write_text("", encoding="utf-8")
    reporter = Reporter(reasons)
    conftest.realdata_summary(reporter)
    assert reporter.lines[1:] == [
        f"to run them with the files already downloaded: OCCUPANCY_DATA_DIR={folder} tox"
    ]


def test_a_session_that_skipped_none_says_nothing():
    reporter = Reporter(["Skipped: needs a CUDA GPU"])
    conftest.realdata_summary(reporter)
    assert reporter.lines == []
