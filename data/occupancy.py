"""The UCI Occupancy Detection data set: find or download it, verify it by sha256, parse it.

The three files come, in this order of precedence, from the `data_dir` argument, from the
folder named by the OCCUPANCY_DATA_DIR environment variable, or from a download of the UCI
archive into a per-user cache (BACKPROP_ORACLE_CACHE overrides where that cache lives). Every
file is checked against its published sha256 before it is parsed, so a loaded split is byte for
byte the UCI original.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pooch

from .errors import DataError

ARCHIVE_URL = "https://archive.ics.uci.edu/static/public/357/occupancy+detection.zip"
ARCHIVE_SHA256 = "4ae3f46aa98eedff564a9f6924d1635173e2fd2c816004342a9be93076d3a81a"
ARCHIVE_NAME = "occupancy_detection.zip"

SPLITS: dict[str, str] = {
    "train": "datatraining.txt",
    "test": "datatest.txt",
    "test2": "datatest2.txt",
}
MEMBER_SHA256: dict[str, str] = {
    "datatraining.txt": "b2c4d0ce2b9e4e453c476f7125ef31aeec2d1f5c7f5572d0e80de3df6521ab56",
    "datatest.txt": "1b92c7c1b2838963464fa891a610cf3c5db4becb7189189b29b330107a584c7f",
    "datatest2.txt": "d026d1bd5aeccd4aff4f3b3710d48e40613bd5fc370db7e61bbdcaa50d985095",
}
EXPECTED_ROWS: dict[str, int] = {"train": 8143, "test": 2665, "test2": 9752}

FEATURES: tuple[str, ...] = ("Temperature", "Humidity", "Light", "CO2", "HumidityRatio")
TARGET = "Occupancy"
HEADER: tuple[str, ...] = ("date", *FEATURES, TARGET)
# R's write.csv layout: each data row starts with a quoted row id that the header does not name.
FIELDS_PER_ROW = len(HEADER) + 1

DATA_DIR_ENV = "OCCUPANCY_DATA_DIR"
CACHE_ENV = "BACKPROP_ORACLE_CACHE"

_FILE_LIST = ", ".join(SPLITS.values())
_DATA_DIR_FIX = (
    f"set {DATA_DIR_ENV} (or pass data_dir) to a folder holding {_FILE_LIST} exactly as "
    f"published by UCI, or unset it to download them into the cache"
)
_CACHE_FIX = "delete the file and rerun to download it again"
_PARSE_FIX = (
    f"this is not an intact copy of the UCI file: delete it and rerun to download it again, "
    f"or set {DATA_DIR_ENV} to a folder holding intact copies of {_FILE_LIST}"
)

# Plain decimal numbers only: float() would also accept "nan", "inf" and "1_000".
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = {"", "na", "nan", "inf", "infinity"}


@dataclass(frozen=True, eq=False)
class Split:
    """One parsed, verified file of the data set.

    X: (n, 5) float64, columns in FEATURES order, raw units. y: (n,) float64 of 0.0/1.0.
    row_ids: (n,) int64, the row id in the first field of each data row. Arrays are read-only.
    """

    name: str
    path: Path
    sha256: str
    X: np.ndarray
    y: np.ndarray
    row_ids: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])


# --- locating and verifying the files -----------------------------------------------------


def occupancy_files(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Return split name -> path of a verified file, downloading into the cache if needed."""
    if data_dir is not None:
        return _files_in(Path(data_dir), source="the data_dir argument")
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return _files_in(Path(from_env), source=f"{DATA_DIR_ENV}={from_env}")
    return _cached_files(cache_dir())


def cache_dir() -> Path:
    """The download folder: $BACKPROP_ORACLE_CACHE/occupancy, else the per-user cache."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path(pooch.os_cache("backprop-oracle"))
    return (base / "occupancy").resolve()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files_in(folder: Path, source: str) -> dict[str, Path]:
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise DataError(
            f"the data folder (from {source}) does not exist or is not a folder",
            path=folder,
            fix=_DATA_DIR_FIX,
        )
    files = {}
    for split, name in SPLITS.items():
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{name} is missing from the data folder (from {source})",
                path=path,
                fix=_DATA_DIR_FIX,
            )
        _verify(path, fix=f"replace it with the original from {ARCHIVE_URL}, or {_DATA_DIR_FIX}")
        files[split] = path
    return files


def _verify(path: Path, fix: str) -> None:
    expected = MEMBER_SHA256[path.name]
    actual = file_sha256(path)
    if actual != expected:
        raise DataError(
            f"sha256 mismatch: expected {expected}, found {actual}; the file is not the UCI "
            f"original (corrupted, truncated or edited)",
            path=path,
            fix=fix,
        )


def _is_verified(path: Path) -> bool:
    return path.is_file() and file_sha256(path) == MEMBER_SHA256[path.name]


def _cached_files(folder: Path) -> dict[str, Path]:
    files = {split: folder / name for split, name in SPLITS.items()}
    if all(_is_verified(path) for path in files.values()):
        return files
    return download_occupancy(folder)


# --- download and extraction ----------------------------------------------------------------


def download_occupancy(
    folder: str | os.PathLike[str] | None = None,
    *,
    url: str = ARCHIVE_URL,
    known_hash: str = ARCHIVE_SHA256,
    downloader: Callable[..., Any] | None = None,
) -> dict[str, Path]:
    """Download the archive into `folder` (default: `cache_dir()`) and extract the three files.

    pooch streams the download to a temporary file in `folder`, checks its sha256 against
    `known_hash` and only then renames it into place (and deletes the temporary file on any
    failure), so an interrupted or corrupted download leaves nothing behind. A cached archive
    whose digest matches is reused without a download. `url`, `known_hash` and `downloader`
    (a pooch downloader) exist so that tests can serve a local archive.
    """
    target = Path(folder).resolve() if folder is not None else cache_dir()
    try:
        return pooch.retrieve(
            url,
            known_hash=known_hash,
            fname=ARCHIVE_NAME,
            path=target,
            processor=lambda archive, _action, _pooch: extract_members(Path(archive), target),
            downloader=downloader,
        )
    except DataError:
        raise
    except ValueError as err:  # pooch's digest mismatch (or an unsupported URL)
        raise DataError(
            f"could not retrieve a verified copy of {url}: {err}",
            path=target / ARCHIVE_NAME,
            fix=f"rerun to download again; if it keeps failing, download {url} yourself, "
            f"check its sha256 is {known_hash}, unzip it and set {DATA_DIR_ENV} to that folder",
        ) from err


def extract_members(archive: Path, folder: Path) -> dict[str, Path]:
    """Extract the three data files from `archive` into `folder`, verified and atomically.

    Nothing is extracted if any member name is absolute or contains '..' (zip-slip). Each
    file is written to a temporary file in `folder` and renamed into place only after its
    sha256 matches, so `folder` never holds a partial or unverified data file. Files already
    in place and verified are left alone.
    """
    fix = f"delete {archive} and rerun to download it again"
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member_name(info.filename, archive, fix)
            members = {name: _find_member(infos, name, archive, fix) for name in SPLITS.values()}
            files = {}
            for split, name in SPLITS.items():
                target = folder / name
                if not _is_verified(target):
                    _extract_one(zf, members[name], target, fix)
                files[split] = target
            return files
    except zipfile.BadZipFile as err:
        raise DataError(f"not a valid zip archive: {err}", path=archive, fix=fix) from err


def _check_member_name(name: str, archive: Path, fix: str) -> None:
    # Members are only ever written to `folder / <known file name>`, so a hostile name could
    # not escape anyway; refusing the whole archive makes tampering loud rather than silent.
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PureWindowsPath(name).drive or ".." in PurePosixPath(posix).parts:
        raise DataError(
            f"archive member {name!r} has an unsafe path (absolute or containing '..'); "
            f"refusing to extract anything from this archive",
            path=archive,
            fix=fix,
        )


def _find_member(
    infos: list[zipfile.ZipInfo], name: str, archive: Path, fix: str
) -> zipfile.ZipInfo:
    # Matched by base name because the archive's folder layout is not part of its contract.
    found = [i for i in infos if not i.is_dir() and PurePosixPath(i.filename).name == name]
    if len(found) != 1:
        raise DataError(
            f"expected exactly one member named {name!r}, found {len(found)}",
            path=archive,
            fix=fix,
        )
    return found[0]


def _extract_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, fix: str) -> None:
    expected = MEMBER_SHA256[target.name]
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, zf.open(info) as member:
            while chunk := member.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            # Without fsync a crash right after the rename could leave an empty file in place.
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise DataError(
                f"archive member {info.filename!r} has sha256 {digest.hexdigest()}, "
                f"expected {expected}",
                path=zf.filename,
                fix=fix,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# --- parsing ------------------------------------------------------------------------------


def parse_occupancy_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse one Occupancy file without checking its digest: (row_ids, X, y).

    row_ids: (n,) int64; X: (n, 5) float64 in FEATURES order; y: (n,) float64 of 0/1.
    Raises DataError naming the file and the 1-based line (the header is line 1).
    """
    path = Path(path).resolve()
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = _read_rows(f, path)
    except FileNotFoundError as err:
        raise DataError("file not found", path=path, fix=_DATA_DIR_FIX) from err
    except UnicodeDecodeError as err:
        raise DataError(
            f"not UTF-8 text (byte {err.start}: {err.reason})", path=path, fix=_PARSE_FIX
        ) from err

    if not lines:
        raise DataError("the file is empty", path=path, fix=_PARSE_FIX)
    header_line, header = lines[0]
    if tuple(header) != HEADER:
        raise DataError(
            f"wrong header: expected {list(HEADER)}, found {header}",
            path=path,
            line=header_line,
            fix=_PARSE_FIX,
        )
    if len(lines) == 1:
        raise DataError("no data rows after the header", path=path, fix=_PARSE_FIX)

    n = len(lines) - 1
    row_ids = np.empty(n, dtype=np.int64)
    X = np.empty((n, len(FEATURES)), dtype=np.float64)  # (n, 5)
    y = np.empty(n, dtype=np.float64)  # (n,)
    for i, (line, row) in enumerate(lines[1:]):
        if len(row) != FIELDS_PER_ROW:
            raise DataError(
                f"expected {FIELDS_PER_ROW} fields (a row id, then the {len(HEADER)} header "
                f"columns), found {len(row)}; the row is truncated or malformed",
                path=path,
                line=line,
                fix=_PARSE_FIX,
            )
        row_ids[i] = _row_id(row[0], path, line)
        X[i] = [
            _number(cell, column, path, line)
            for column, cell in zip(FEATURES, row[2:7], strict=True)
        ]
        y[i] = _number(row[7], TARGET, path, line)
        if y[i] not in (0.0, 1.0):
            raise DataError(
                f"column {TARGET!r} holds {row[7]!r}; the target must be 0 or 1",
                path=path,
                line=line,
                fix=_PARSE_FIX,
            )
    return row_ids, X, y


def _read_rows(f: Any, path: Path) -> list[tuple[int, list[str]]]:
    """All rows as (line number where the row ends, fields)."""
    reader = csv.reader(f, strict=True)
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise DataError(
            f"malformed CSV: {err}", path=path, line=reader.line_num, fix=_PARSE_FIX
        ) from err
    return rows


def _row_id(text: str, path: Path, line: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise DataError(
            f"the row id (first field) is {text!r}, not a non-negative integer",
            path=path,
            line=line,
            fix=_PARSE_FIX,
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
        f"column {column!r} holds {text!r}, {problem}", path=path, line=line, fix=_PARSE_FIX
    )


# --- loading ------------------------------------------------------------------------------


def load_split(split: str, data_dir: str | os.PathLike[str] | None = None) -> Split:
    """Load one verified split: "train", "test" or "test2"."""
    if split not in SPLITS:
        raise DataError(
            f"unknown split {split!r}; the valid splits are {', '.join(map(repr, SPLITS))}"
        )
    return _load(split, occupancy_files(data_dir)[split])


def load_occupancy(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Split]:
    """Load all three verified splits, keyed "train", "test", "test2"."""
    return {split: _load(split, path) for split, path in occupancy_files(data_dir).items()}


def _load(split: str, path: Path) -> Split:
    row_ids, X, y = parse_occupancy_file(path)
    for array in (row_ids, X, y):
        # The digest describes these values; a silently edited copy would make it lie.
        array.setflags(write=False)
    return Split(name=split, path=path, sha256=MEMBER_SHA256[path.name], X=X, y=y, row_ids=row_ids)


def dataset_info(splits: Mapping[str, Split]) -> dict[str, Any]:
    """JSON-ready description of loaded splits, for reports."""
    return {
        "name": "occupancy",
        "url": ARCHIVE_URL,
        "archive_sha256": ARCHIVE_SHA256,
        "features": list(FEATURES),
        "target": TARGET,
        "splits": {
            name: {"file": split.path.name, "sha256": split.sha256, "rows": split.n_rows}
            for name, split in splits.items()
        },
    }
