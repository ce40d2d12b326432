"""Parsing one Occupancy file: pandas reads the CSV, then every cell is checked and converted.

pandas reads every cell as text, because its own number parsing would accept "nan", "inf"
and "1_000": the cells are then checked column by column against a plain-decimal pattern and
converted with Python's float(), so the values are exactly the numbers written. The first row
with a problem is reported with its 1-based line (the header is line 1), the same errors as
the csv-module parser that this one replaced, in the same order: faults of the CSV itself (a
misplaced or unclosed quote) first, then row by row. Unlike it, a quoted field that holds a
line break is refused (the real files have none), at the line where the field opens.
"""

from __future__ import annotations

import codecs
import io
import math
import os
import re
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .errors import DataError
from .occupancy_constants import (
    DATA_DIR_FIX,
    FEATURES,
    FIELDS_PER_ROW,
    HEADER,
    PARSE_FIX,
    TARGET,
)

# Plain decimal numbers only: float() would also accept "nan", "inf" and "1_000".
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = {"", "na", "nan", "inf", "infinity"}
_INT64_MAX = int(np.iinfo(np.int64).max)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# pandas' C tokenizer reports a row with too many fields by message only (stable since 0.x).
_FIELD_COUNT = re.compile(r"Expected \d+ fields in line (\d+), saw (\d+)")

# pandas forgives misplaced quotes ('"142"0' is read as 1420); the csv module's strict mode,
# which the files were checked with before, does not. The fast test: every quote belongs to a
# quoted field with no quote or line break inside that lies between field boundaries. Where
# that fails, the grammar finds the first misplaced quote.
_PLAIN_QUOTED = re.compile(rb'"(?<![^,\r\n]")[^"\r\n]*"(?![^,\r\n])')
_FIELD = rb'(?:"(?:[^"]|"")*"|[^",\r\n][^,\r\n]*|)'
_RECORD = _FIELD + rb"(?:," + _FIELD + rb")*"
_CSV = re.compile(rb"(?:" + _RECORD + rb"(?:\r\n|\r|\n))*" + _RECORD)


# Every cell as text, no text taken for NaN, blank lines kept (as rows with no fields).
class _Pandas:
    """pandas, imported when a file is first parsed: importing it takes a third of a second,
    and a run on the synthetic data set, or ``--help``, needs none of it."""

    def __getattr__(self, name: str) -> Any:
        import pandas

        return getattr(pandas, name)


pd = _Pandas()

_READ: dict[str, Any] = {
    "header": None,
    "dtype": object,
    "na_filter": False,
    "skip_blank_lines": False,
    "index_col": False,
    "engine": "c",
    "encoding": "utf-8",
}


def parse_occupancy_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse one Occupancy file without checking its digest: (row_ids, X, y).

    row_ids: (n,) int64; X: (n, 5) float64 in FEATURES order; y: (n,) float64 of 0/1.
    Raises DataError naming the file and the 1-based line (the header is line 1).
    """
    path = Path(path).resolve()
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError("file not found", path=path, fix=DATA_DIR_FIX) from err
    return parse_occupancy_bytes(data, path)


def parse_occupancy_bytes(
    data: bytes, path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse the bytes of one Occupancy file, e.g. the very bytes whose digest was checked.

    `path` only names the file in errors. Returns and raises as `parse_occupancy_file`.
    """
    path = Path(path)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"not UTF-8 text (byte {err.start}: {err.reason})", path=path, fix=PARSE_FIX
        ) from err
    if not data:
        raise DataError("the file is empty", path=path, fix=PARSE_FIX)
    _check_quotes(data, path)
    header = _header(data, path)
    if header != list(HEADER):
        raise DataError(
            f"wrong header: expected {list(HEADER)}, found {header}",
            path=path,
            line=1,
            fix=PARSE_FIX,
        )
    try:
        table = pd.read_csv(io.BytesIO(data), names=range(FIELDS_PER_ROW), **_READ)
    except pd.errors.ParserError as err:
        raise _tokenizer_error(err, data, path) from err
    cells = table.to_numpy()[1:]  # (n, 8) str; row 0 is the header
    if len(cells) == 0:
        raise DataError("no data rows after the header", path=path, fix=PARSE_FIX)
    return _checked_arrays(cells, data, path)


def _check_quotes(data: bytes, path: Path) -> None:
    """Refuse a quote that is never closed, or one followed by more than a comma or line end."""
    if 2 * len(_PLAIN_QUOTED.findall(data)) == data.count(b'"'):
        return
    match = _CSV.match(data)  # always a match, perhaps an empty one
    end = match.end() if match else 0
    if end == len(data):
        return  # quotes doubled inside quotes, or a line break inside them: see below
    before = data[:end]
    line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
    raise DataError(
        "malformed CSV: a quote in the wrong place (a quoted field must be closed, then "
        "followed by a comma or the end of the line)",
        path=path,
        line=line,
        fix=PARSE_FIX,
    )


def _header(data: bytes, path: Path) -> list[str]:
    """The first line's fields."""
    try:
        first = pd.read_csv(io.BytesIO(data), nrows=1, **_READ)
    except pd.errors.EmptyDataError:  # the first line is blank
        return []
    except pd.errors.ParserError as err:
        raise _tokenizer_error(err, data, path) from err
    fields = [str(cell) for cell in first.iloc[0]] if len(first) else []
    if fields and data.startswith(codecs.BOM_UTF8):
        fields[0] = "\ufeff" + fields[0]  # pandas drops a byte order mark; the files have none
    return fields


def _tokenizer_error(err: pd.errors.ParserError, data: bytes, path: Path) -> DataError:
    """The DataError for a row that pandas could not split into fields."""
    message = " ".join(str(err).split())
    found = _FIELD_COUNT.search(message)
    if found is None:
        return DataError(f"malformed CSV: {message}", path=path, fix=PARSE_FIX)
    # pandas counts rows, not lines. The rows above are checked first (an earlier row's problem
    # comes first, as before); once they pass, none holds a line break, so row is line.
    line, fields = int(found[1]), int(found[2])
    _check_rows_above(line, data, path)
    return DataError(_field_count_problem(fields), path=path, line=line, fix=PARSE_FIX)


def _check_rows_above(line: int, data: bytes, path: Path) -> None:
    """Raise the first problem in the data rows above `line`, as if it were the last line."""
    if line <= 2:
        return
    try:
        table = pd.read_csv(io.BytesIO(data), names=range(FIELDS_PER_ROW), nrows=line - 1, **_READ)
    except pd.errors.ParserError:
        return
    _checked_arrays(table.to_numpy()[1:], data, path)


def _field_count_problem(fields: int) -> str:
    return (
        f"expected {FIELDS_PER_ROW} fields (a row id, then the {len(HEADER)} header "
        f"columns), found {fields}; the row is truncated or malformed"
    )


def _checked_arrays(
    cells: np.ndarray, data: bytes, path: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_ids, X, y) from the data rows' cells, or the first row's problem raised."""
    _refuse_line_breaks(cells, data, path)
    row_ids, id_ok = _row_ids(cells[:, 0])
    bad = ~id_ok
    bad |= cells[:, -1] == ""  # a short row (pandas pads it with "") or an empty target
    X = np.empty((len(cells), len(FEATURES)), dtype=np.float64)  # (n, 5)
    for j in range(len(FEATURES)):
        X[:, j] = _decimals(cells[:, 2 + j])
    y = _decimals(cells[:, -1])  # (n,)
    bad |= ~np.isfinite(X).all(axis=1)  # not a plain decimal, or it overflows float64
    bad |= (y != 0.0) & (y != 1.0)  # NaN included
    if bad.any():
        first = int(np.argmax(bad))
        _raise_row_problem(cells[first], first + 2, data, path)
    return row_ids, X, y


def _refuse_line_breaks(cells: np.ndarray, data: bytes, path: Path) -> None:
    """A line break inside quotes: the files have none, so a quote is misplaced or unclosed."""
    lines = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    lines += not data.endswith((b"\n", b"\r"))
    if lines == 1 + len(cells):
        return  # one row a line, the header's included (the fast test; the scan is below)
    if not any(_LINE_BREAK.search("".join(column)) for column in cells.T):
        return
    breaks = [sum(len(_LINE_BREAK.findall(cell)) for cell in row) for row in cells]
    first = next(i for i, count in enumerate(breaks) if count)
    line = first + 2  # the rows above hold no line break
    raise DataError(
        f"malformed CSV: a quoted field holds a line break, so this row runs on to line "
        f"{line + breaks[first]}; the real files have none (is a quote misplaced or unclosed?)",
        path=path,
        line=line,
        fix=PARSE_FIX,
    )


def _each(test: Any, texts: np.ndarray) -> np.ndarray:
    return np.fromiter(map(bool, map(test, texts)), dtype=bool, count=len(texts))


def _decimals(texts: np.ndarray) -> np.ndarray:
    """float() of each plain decimal (see _DECIMAL), NaN for any other text."""
    codes, distinct = pd.factorize(texts)  # check and convert each distinct text once
    ok = _each(_DECIMAL.fullmatch, distinct)
    values = np.full(len(distinct), np.nan)
    values[ok] = distinct[ok].astype(np.float64)  # float() of each str: correctly rounded
    return values[codes]


def _row_ids(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The row ids as int64, and which texts are one (a non-negative integer that fits)."""
    ok = _each(str.isascii, texts) & _each(str.isdigit, texts)  # as _row_id checks
    short = ok & (np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) <= 18)
    ids = np.zeros(len(texts), dtype=np.int64)
    ids[short] = texts[short].astype(np.int64)
    for i in np.flatnonzero(ok & ~short):  # 19 digits or more: may not fit in int64
        ok[i] = int(texts[i]) <= _INT64_MAX
        ids[i] = int(texts[i]) if ok[i] else 0
    return ids, ok


def _raise_row_problem(row: np.ndarray, line: int, data: bytes, path: Path) -> NoReturn:
    """Raise the first problem of one data row, checked in the order of its fields."""
    fields = FIELDS_PER_ROW if row[-1] != "" else _field_count(data.splitlines()[line - 1])
    if fields != FIELDS_PER_ROW:
        raise DataError(_field_count_problem(fields), path=path, line=line, fix=PARSE_FIX)
    _row_id(row[0], path, line)
    for column, cell in zip(FEATURES, row[2:7], strict=True):
        _number(cell, column, path, line)
    if _number(row[-1], TARGET, path, line) not in (0.0, 1.0):
        raise DataError(
            f"column {TARGET!r} holds {row[-1]!r}; the target must be 0 or 1",
            path=path,
            line=line,
            fix=PARSE_FIX,
        )
    raise AssertionError(f"{path}, line {line}: the row was flagged but passes every check")


def _field_count(line: bytes) -> int:
    """How many fields one line holds (pandas pads short rows, which hides the count)."""
    try:
        return pd.read_csv(io.BytesIO(line), **_READ).shape[1]
    except pd.errors.EmptyDataError:  # a blank line
        return 0


def _row_id(text: str, path: Path, line: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise DataError(
            f"the row id (first field) is {text!r}, not a non-negative integer",
            path=path,
            line=line,
            fix=PARSE_FIX,
        )
    if int(text) > _INT64_MAX:
        raise DataError(
            f"the row id (first field) is {text!r}, too large for a 64-bit integer",
            path=path,
            line=line,
            fix=PARSE_FIX,
        )
    return int(text)


def _number(text: str, column: str, path: Path, line: int) -> float:
    if _DECIMAL.fullmatch(text):
        value = float(text)
        if math.isfinite(value):
            return value
        problem = "which overflows float64"
    elif text.strip().lower().lstrip("+-") in _NON_FINITE:
        problem = "a missing or non-finite value (NaN/inf); the real files have none"
    else:
        problem = "which is not a number"
    raise DataError(
        f"column {column!r} holds {text!r}, {problem}", path=path, line=line, fix=PARSE_FIX
    )
