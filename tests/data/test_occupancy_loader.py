"""The Occupancy loader: verification, the real files' quirks, and every kind of broken file."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from data import (
    FEATURES,
    MEMBER_SHA256,
    SPLITS,
    TARGET,
    DataError,
    dataset_info,
    file_sha256,
    load_occupancy,
    load_split,
    occupancy_files,
    parse_occupancy_file,
)

# From SOURCE.md, i.e. the data set's own documentation: (rows, Occupancy=0, Occupancy=1).
DOCUMENTED_COUNTS = {
    "train": (8143, 6414, 1729),
    "test": (2665, 1693, 972),
    "test2": (9752, 7703, 2049),
}

# Plausible physical ranges for an office: (low, high) per feature, in FEATURES order.
PLAUSIBLE = {
    "Temperature": (15.0, 30.0),  # °C
    "Humidity": (10.0, 50.0),  # %
    "Light": (0.0, 2000.0),  # lux
    "CO2": (300.0, 2500.0),  # ppm
    "HumidityRatio": (0.002, 0.008),  # kg water / kg air
}

NAMES = tuple(SPLITS.values())

HEADER = '"date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"\n'
# Three rows in the real layout, both timestamp styles (quoted and not).
SAMPLE_ROWS = [
    '"140","2015-02-02 14:19:00",23.7,26.272,585.2,749.2,0.00476416302416414,1\n',
    '"141",2015-02-02 14:19:59,23.718,26.29,578.4,760.4,0.00477266099212519,1\n',
    '"142","2015-02-02 14:21:00",23.73,26.23,572.666666666667,769.666666666667,'
    "0.00476515255246541,0\n",
]


@pytest.fixture(scope="module")
def splits(occupancy_dir):
    return load_occupancy(occupancy_dir)


@pytest.fixture
def sample(tmp_path) -> Path:
    path = tmp_path / "sample.txt"
    path.write_text(HEADER + "".join(SAMPLE_ROWS))
    return path


def copy_files(source: Path, target: Path, names: tuple[str, ...] = NAMES) -> Path:
    target.mkdir(exist_ok=True)
    for name in names:
        shutil.copyfile(source / name, target / name)
    return target


# --- the real files -------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("split", list(DOCUMENTED_COUNTS))
def test_row_and_class_counts_match_documentation(splits, split):
    rows, zeros, ones = DOCUMENTED_COUNTS[split]
    s = splits[split]
    assert s.X.shape == (rows, len(FEATURES)) and s.X.dtype == np.float64
    assert s.y.shape == (rows,) and s.y.dtype == np.float64
    assert (int((s.y == 0).sum()), int((s.y == 1).sum())) == (zeros, ones)


@pytest.mark.realdata
def test_row_ids_include_the_offset_in_datatest(splits):
    assert splits["test"].row_ids[0] == 140
    assert splits["train"].row_ids[0] == 1 and splits["test2"].row_ids[0] == 1


@pytest.mark.realdata
@pytest.mark.parametrize("split", list(SPLITS))
def test_feature_ranges_are_plausible(splits, split):
    X = splits[split].X
    for j, feature in enumerate(FEATURES):
        low, high = PLAUSIBLE[feature]
        assert low <= X[:, j].min() and X[:, j].max() <= high, feature


@pytest.mark.realdata
def test_split_records_verified_digest_and_is_read_only(splits):
    s = splits["train"]
    assert s.sha256 == file_sha256(s.path) == MEMBER_SHA256["datatraining.txt"]
    with pytest.raises(ValueError, match="read-only"):
        s.X[0, 0] = 0.0


@pytest.mark.realdata
def test_env_var_and_argument_resolve_to_the_same_files(occupancy_dir, monkeypatch):
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(occupancy_dir))
    assert occupancy_files() == occupancy_files(occupancy_dir)
    assert occupancy_files()["test2"].name == "datatest2.txt"


@pytest.mark.realdata
def test_load_split_matches_load_occupancy(occupancy_dir, splits):
    one = load_split("test", occupancy_dir)
    np.testing.assert_array_equal(one.X, splits["test"].X)


@pytest.mark.realdata
def test_dataset_info_is_json_ready(splits):
    info = json.loads(json.dumps(dataset_info(splits)))
    assert info["name"] == "occupancy"
    assert info["splits"]["test"] == {
        "file": "datatest.txt",
        "sha256": MEMBER_SHA256["datatest.txt"],
        "rows": 2665,
    }


def read_with_the_csv_module(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_ids, X, y) as the standard library reads them: independent of the code under test."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = csv.reader(f)
    assert header == ["date", *FEATURES, TARGET]
    row_ids = np.array([int(row[0]) for row in rows], dtype=np.int64)
    X = np.array([[float(cell) for cell in row[2:7]] for row in rows], dtype=np.float64)
    y = np.array([float(row[7]) for row in rows], dtype=np.float64)
    return row_ids, X, y


@pytest.mark.realdata
@pytest.mark.parametrize("split", list(SPLITS))
def test_values_are_bitwise_the_numbers_written_in_the_file(occupancy_dir, splits, split):
    row_ids, X, y = read_with_the_csv_module(occupancy_dir / SPLITS[split])
    s = splits[split]
    assert s.row_ids.dtype == np.int64 and s.row_ids.tobytes() == row_ids.tobytes()
    assert s.X.flags.c_contiguous and s.X.tobytes() == X.tobytes()
    assert s.y.tobytes() == y.tobytes()


# The first or last data row of each file, copied from the file by eye: (row, row id, X, y).
WRITTEN_ROWS = {
    "train": (0, 1, [23.18, 27.272, 426.0, 721.25, 0.00479298817650529], 1.0),
    "test": (
        -1,
        2804,
        [24.4083333333333, 25.6816666666667, 798.0, 1124.0, 0.00486020770362199],
        1.0,
    ),
    "test2": (
        0,
        1,
        [21.76, 31.1333333333333, 437.333333333333, 1029.66666666667, 0.00502101089021385],
        1.0,
    ),
}


@pytest.mark.realdata
@pytest.mark.parametrize("split", list(WRITTEN_ROWS))
def test_pinned_rows_in_features_order(splits, split):
    row, row_id, x, y = WRITTEN_ROWS[split]
    s = splits[split]
    assert s.row_ids[row] == row_id and s.y[row] == y
    assert s.X[row].tolist() == x


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(DataError, match="'train', 'test', 'test2'"):
        load_split("validation")


# --- broken folders: caught by the existence and digest checks ------------------------------


@pytest.mark.realdata
def test_missing_file_names_path_and_fix(occupancy_dir, tmp_path):
    folder = copy_files(occupancy_dir, tmp_path / "d", names=NAMES[:2])
    with pytest.raises(DataError) as err:
        occupancy_files(folder)
    assert str(folder / "datatest2.txt") in str(err.value)
    assert "OCCUPANCY_DATA_DIR" in str(err.value)


def test_missing_folder_from_env_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="OCCUPANCY_DATA_DIR=") as err:
        occupancy_files()
    assert str(tmp_path / "nowhere") in str(err.value)


@pytest.mark.realdata
@pytest.mark.parametrize("edit", ["flip_byte", "truncate"])
def test_wrong_digest_names_file_and_both_digests(occupancy_dir, tmp_path, edit):
    folder = copy_files(occupancy_dir, tmp_path / "d")
    path = folder / "datatest.txt"
    data = bytearray(path.read_bytes())
    if edit == "flip_byte":
        data[1000] ^= 1
    else:
        data = data[: len(data) // 2]
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        occupancy_files(folder)
    message = str(err.value)
    assert str(path) in message
    assert MEMBER_SHA256["datatest.txt"] in message and file_sha256(path) in message


# --- the parsed bytes are the hashed bytes ---------------------------------------------------

# A file swapped in between the digest check and the parse must never be parsed unverified. An
# audit hook (it sees every open, however it is made) replaces the file just before its second
# open, so a loader that hashes one read and parses another parses the forged copy.
_SWAPS: dict[str, Path] = {}  # file -> the file that replaces it on its second open
_OPENED: set[str] = set()
_HOOKED: list[bool] = []


def _swap_on_second_open(event: str, args: tuple) -> None:
    if event != "open" or not _SWAPS or not isinstance(args[0], str | bytes | os.PathLike):
        return
    name = os.path.realpath(os.fsdecode(args[0]))
    if name in _OPENED and name in _SWAPS:
        os.replace(_SWAPS.pop(name), name)
    elif name in _SWAPS:
        _OPENED.add(name)


@contextlib.contextmanager
def swapped_on_second_open(path: Path, forged: Path) -> Iterator[None]:
    if not _HOOKED:
        sys.addaudithook(_swap_on_second_open)  # hooks cannot be removed; idle once disarmed
        _HOOKED.append(True)
    _SWAPS[os.path.realpath(path)] = forged
    try:
        yield
    finally:
        _SWAPS.clear()
        _OPENED.clear()


@pytest.mark.realdata
@pytest.mark.parametrize("load", ["load_split", "load_occupancy"])
def test_a_file_swapped_after_hashing_is_never_parsed(occupancy_dir, tmp_path, splits, load):
    folder = copy_files(occupancy_dir, tmp_path / "d")
    path = folder / "datatest.txt"
    forged = tmp_path / "forged.txt"
    forged.write_bytes(path.read_bytes().replace(b",23.7,26.272,", b",99.9,26.272,", 1))
    with swapped_on_second_open(path, forged):
        try:
            split = (
                load_split("test", folder)
                if load == "load_split"
                else load_occupancy(folder)["test"]
            )
        except DataError as err:  # refusing the swapped file is as good as never reading it
            assert "sha256" in str(err)
            return
    assert split.X[0, 0] == 23.7
    assert split.X.tobytes() == splits["test"].X.tobytes()


# --- broken contents: caught by the parser (which does not check digests) -------------------


@pytest.mark.realdata
def test_truncated_real_file_reports_last_line(occupancy_dir, tmp_path):
    path = tmp_path / "datatest.txt"
    data = (occupancy_dir / "datatest.txt").read_bytes()
    path.write_bytes(data[: data.index(b"\n", 100_000) + 20])  # cut 20 bytes into a row
    lines = path.read_bytes().count(b"\n") + 1
    with pytest.raises(DataError, match="truncated") as err:
        parse_occupancy_file(path)
    assert err.value.line == lines
    assert f"{path}, line {lines}:" in str(err.value)


def test_sample_in_the_real_layout_parses(sample):
    row_ids, X, y = parse_occupancy_file(sample)
    np.testing.assert_array_equal(row_ids, [140, 141, 142])
    np.testing.assert_array_equal(X[:, 3], [749.2, 760.4, 769.666666666667])
    np.testing.assert_array_equal(y, [1.0, 1.0, 0.0])


def _replace_cell(line: int, field: int, text: str):
    def edit(lines: list[str]) -> None:
        cells = lines[line - 1].rstrip("\n").split(",")
        cells[field] = text
        lines[line - 1] = ",".join(cells) + "\n"

    return edit


def _drop_field(line: int, field: int):
    def edit(lines: list[str]) -> None:
        cells = lines[line - 1].rstrip("\n").split(",")
        del cells[field]
        lines[line - 1] = ",".join(cells) + "\n"

    return edit


def _keep_lines(n: int):
    def edit(lines: list[str]) -> None:
        del lines[n:]

    return edit


def _set_line(line: int, text: str):
    def edit(lines: list[str]) -> None:
        lines[line - 1] = text

    return edit


# (edit, line named in the message or None, words the message must contain)
BROKEN = {
    "wrong_header": (_set_line(1, HEADER.replace("CO2", "Co2")), 1, "expected ['date'"),
    "header_without_target": (_drop_field(1, 6), 1, "wrong header"),
    "non_numeric_cell": (_replace_cell(3, 5, "abc"), 3, "column 'CO2' holds 'abc'"),
    "nan_cell": (_replace_cell(2, 3, "NaN"), 2, "column 'Humidity' holds 'NaN'"),
    "na_cell": (_replace_cell(4, 2, "NA"), 4, "column 'Temperature' holds 'NA'"),
    "inf_cell": (_replace_cell(2, 4, "-inf"), 2, "non-finite"),
    "overflow_cell": (_replace_cell(2, 4, "1e999"), 2, "overflows"),
    "missing_field": (_drop_field(3, 4), 3, "found 7"),
    "extra_field": (_replace_cell(4, 7, "1,1"), 4, "found 9"),
    "blank_line": (_set_line(3, "\n"), 3, "found 0"),
    "target_not_binary": (_replace_cell(2, 7, "2"), 2, "must be 0 or 1"),
    "bad_row_id": (_replace_cell(4, 0, '"x"'), 4, "row id"),
    "unclosed_quote": (_set_line(4, '"142,1\n'), 4, "malformed CSV"),
    "header_only": (_keep_lines(1), None, "no data rows"),
    "empty": (_keep_lines(0), None, "empty"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_parse_error_names_file_line_and_problem(sample, case):
    edit, line, words = BROKEN[case]
    lines = sample.read_text().splitlines(keepends=True)
    edit(lines)
    sample.write_text("".join(lines))
    with pytest.raises(DataError, match="Fix: ") as err:
        parse_occupancy_file(sample)
    message = str(err.value)
    assert words in message
    assert err.value.line == line
    where = f"{sample}, line {line}: " if line is not None else f"{sample}: "
    assert message.startswith(where)


def _both(first, second):
    def edit(lines: list[str]) -> None:
        first(lines)
        second(lines)

    return edit


def _append(text: str):
    def edit(lines: list[str]) -> None:
        lines.append(text)

    return edit


SHORT_ROW_ENDING_IN_A_COMMA = '"141",2015-02-02 14:19:59,23.718,26.29,578.4,760.4,\n'
# What a lenient reader would accept, refused as the hand-written parser refused it; and the
# line of the first problem when a later row is malformed too. (edit, line, words)
STRICT = {
    "underscore_digits": (_replace_cell(3, 4, "1_000"), 3, "'Light' holds '1_000', which is not a"),
    "hexadecimal": (_replace_cell(2, 5, "0x1A"), 2, "'CO2' holds '0x1A', which is not a number"),
    "leading_space": (_replace_cell(2, 2, " 23.7"), 2, "which is not a number"),
    "infinity": (_replace_cell(4, 6, "Infinity"), 4, "non-finite"),
    "empty_target": (_replace_cell(3, 7, ""), 3, "column 'Occupancy' holds ''"),
    "target_one_point_five": (_replace_cell(3, 7, "1.5"), 3, "must be 0 or 1"),
    "short_row_ending_in_a_comma": (_set_line(3, SHORT_ROW_ENDING_IN_A_COMMA), 3, "found 7"),
    "two_empty_cells_at_the_end": (
        _set_line(3, SHORT_ROW_ENDING_IN_A_COMMA.replace(",\n", ",,\n")),
        3,
        "column 'HumidityRatio' holds ''",
    ),
    "trailing_blank_line": (_append("\n"), 5, "found 0"),
    "row_id_too_large": (_replace_cell(2, 0, '"99999999999999999999"'), 2, "row id"),
    "negative_row_id": (_replace_cell(2, 0, '"-1"'), 2, "row id"),
    # A line break inside quotes: the real files have none, so it is a misplaced quote. It is
    # reported at the line where the field opens. (The csv module accepted it.)
    "line_break_in_a_quoted_date": (
        _replace_cell(3, 1, '"2015-02-02\n14:19:59"'),
        3,
        "malformed CSV",
    ),
    # A misplaced quote, found where the csv module's strict mode found it.
    "unclosed_quote_mid_file": (_set_line(3, '"141,1\n'), 4, "malformed CSV"),
    "digit_after_quoted_row_id": (_replace_cell(3, 0, '"141"0'), 3, "malformed CSV"),
    "text_after_quoted_date": (_replace_cell(2, 1, '"2015-02-02 14:19:00"x'), 2, "malformed CSV"),
    "line_break_after_bad_cell": (
        _both(_replace_cell(2, 4, "abc"), _replace_cell(3, 1, '"2015-02-02\n14:19:59"')),
        3,
        "malformed CSV",
    ),
    "bad_cell_before_extra_field": (
        _both(_replace_cell(2, 3, "NaN"), _replace_cell(4, 7, "1,1")),
        2,
        "column 'Humidity' holds 'NaN'",
    ),
    "extra_field_before_bad_cell": (
        _both(_replace_cell(2, 7, "1,1"), _replace_cell(4, 3, "NaN")),
        2,
        "found 9",
    ),
    # As before, a quote left open is a fault of the whole file, found before any row's cells.
    "unclosed_quote_after_bad_cell": (
        _both(_replace_cell(2, 4, "abc"), _set_line(4, '"142,1\n')),
        4,
        "malformed CSV",
    ),
    "byte_order_mark": (_set_line(1, "\ufeff" + HEADER), 1, "wrong header"),
}


@pytest.mark.parametrize("case", list(STRICT))
def test_parser_is_as_strict_as_ever(sample, case):
    edit, line, words = STRICT[case]
    lines = sample.read_text().splitlines(keepends=True)
    edit(lines)
    sample.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match="Fix: ") as err:
        parse_occupancy_file(sample)
    assert words in str(err.value)
    assert err.value.line == line
    assert str(err.value).startswith(f"{sample}, line {line}: ")


def test_non_utf8_bytes_are_a_data_error(sample):
    sample.write_bytes(sample.read_bytes() + b"\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        parse_occupancy_file(sample)


def test_data_error_survives_pickling(tmp_path):
    err = DataError("bad", path=tmp_path / "f.txt", line=3, fix="mend it")
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.line == 3 and copy.path == err.path
