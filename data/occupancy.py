"""The UCI Occupancy Detection data set: find or download it, verify it by sha256, load it.

The three files come, in this order of precedence, from the `data_dir` argument, from the
folder named by the OCCUPANCY_DATA_DIR environment variable, or from a download of the UCI
archive into a per-user cache (BACKPROP_ORACLE_CACHE overrides where that cache lives). A
file is loaded from one read of its bytes: their sha256 is checked against the published one
and those same bytes are parsed, so a loaded split is byte for byte the UCI original even if
the file is replaced on disk meanwhile.

This module is the public face of the data set; the constants live in occupancy_constants,
the download and extraction in download, the parser in occupancy_csv.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .download import cache_dir, download_occupancy, extract_members, file_sha256, is_verified
from .errors import DataError
from .occupancy_constants import (
    ARCHIVE_NAME,
    ARCHIVE_SHA256,
    ARCHIVE_URL,
    CACHE_ENV,
    CACHE_FILE_FIX,
    CACHE_FOLDER_FIX,
    DATA_DIR_ENV,
    DATA_DIR_FIX,
    EXPECTED_ROWS,
    FEATURES,
    FIELDS_PER_ROW,
    HEADER,
    MEMBER_SHA256,
    SPLITS,
    TARGET,
)
from .occupancy_csv import parse_occupancy_bytes, parse_occupancy_file

__all__ = [
    "ARCHIVE_NAME",
    "ARCHIVE_SHA256",
    "ARCHIVE_URL",
    "CACHE_ENV",
    "DATA_DIR_ENV",
    "EXPECTED_ROWS",
    "FEATURES",
    "FIELDS_PER_ROW",
    "HEADER",
    "MEMBER_SHA256",
    "SPLITS",
    "TARGET",
    "Split",
    "cache_dir",
    "dataset_info",
    "download_occupancy",
    "extract_members",
    "file_sha256",
    "load_occupancy",
    "load_split",
    "occupancy_files",
    "parse_occupancy_bytes",
    "parse_occupancy_file",
]

_REPLACE_FIX = f"replace it with the original from {ARCHIVE_URL}, or {DATA_DIR_FIX}"


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
    files, fix = _locate(data_dir)
    for path in files.values():
        _verified_bytes(path, fix)
    return files


def _locate(data_dir: str | os.PathLike[str] | None) -> tuple[dict[str, Path], str]:
    """Split name -> path of each file (checked to exist, not yet verified), and the fix to
    suggest if one turns out not to be the UCI original."""
    if data_dir is not None:
        return _files_in(Path(data_dir), source="the data_dir argument"), _REPLACE_FIX
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return _files_in(Path(from_env), source=f"{DATA_DIR_ENV}={from_env}"), _REPLACE_FIX
    return _cached_files(cache_dir()), CACHE_FILE_FIX


def _files_in(folder: Path, source: str) -> dict[str, Path]:
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise DataError(
            f"the data folder (from {source}) does not exist or is not a folder",
            path=folder,
            fix=DATA_DIR_FIX,
        )
    files = {}
    for split, name in SPLITS.items():
        path = folder / name
        if not path.is_file():
            raise DataError(
                f"{name} is missing from the data folder (from {source})",
                path=path,
                fix=DATA_DIR_FIX,
            )
        files[split] = path
    return files


def _cached_files(folder: Path) -> dict[str, Path]:
    files = {split: folder / name for split, name in SPLITS.items()}
    try:
        if all(is_verified(path) for path in files.values()):
            return files
    except OSError as err:  # e.g. a folder without read permission
        raise DataError(
            f"the download cache cannot be read ({err.strerror or err})",
            path=folder,
            fix=CACHE_FOLDER_FIX,
        ) from err
    return download_occupancy(folder)


# The UCI files are under 1 MB each: a file past this is none of them, and is not read whole.
_MAX_FILE_BYTES = 8 << 20


def _verified_bytes(path: Path, fix: str) -> bytes:
    """The file's bytes, read once, after checking their sha256: parse these, never a reread."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as err:
        what = f"cannot read the file ({err.strerror or err})"
        raise DataError(what, path=path, fix=fix) from err
    if len(data) > _MAX_FILE_BYTES:
        what = f"larger than {_MAX_FILE_BYTES} bytes, so not the UCI original (each is under 1 MB)"
        raise DataError(what, path=path, fix=fix)
    expected = MEMBER_SHA256[path.name]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DataError(
            f"sha256 mismatch: expected {expected}, found {actual}; the file is not the UCI "
            f"original (corrupted, truncated or edited)",
            path=path,
            fix=fix,
        )
    return data


# --- loading ------------------------------------------------------------------------------


def load_split(split: str, data_dir: str | os.PathLike[str] | None = None) -> Split:
    """Load one verified split: "train", "test" or "test2"."""
    if split not in SPLITS:
        raise DataError(
            f"unknown split {split!r}; the valid splits are {', '.join(map(repr, SPLITS))}"
        )
    files, fix = _locate(data_dir)
    return _load(split, files[split], fix)


def load_occupancy(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Split]:
    """Load all three verified splits, keyed "train", "test", "test2"."""
    files, fix = _locate(data_dir)
    return {split: _load(split, path, fix) for split, path in files.items()}


def _load(split: str, path: Path, fix: str) -> Split:
    row_ids, X, y = parse_occupancy_bytes(_verified_bytes(path, fix), path)
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
