"""Downloading the UCI archive into the cache with pooch, and extracting its three files.

Every failure a user can meet here (no network, a cache folder that is a file or not
writable, a corrupted archive) is a DataError that says what to do instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pooch

from .errors import DataError
from .occupancy_constants import (
    ARCHIVE_NAME,
    ARCHIVE_SHA256,
    ARCHIVE_URL,
    CACHE_ENV,
    CACHE_FOLDER_FIX,
    DATA_DIR_ENV,
    FILE_LIST,
    MEMBER_SHA256,
    SPLITS,
)

_FEW_WORDS = 160  # characters of an underlying error kept in a message


def cache_root() -> Path:
    """The tool's per-user cache: $BACKPROP_ORACLE_CACHE, else the platform's user cache."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path(pooch.os_cache("backprop-oracle"))).resolve()


def cache_dir() -> Path:
    """The download folder: the cache root's ``occupancy``."""
    return cache_root() / "occupancy"


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
    _prepare_cache_folder(target)
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
    except OSError as err:  # requests' exceptions (no network, HTTP errors) are OSErrors too
        raise DataError(
            f"downloading {url} failed ({_in_a_few_words(err)})",
            path=target,
            fix=f"check the network and rerun; or set {DATA_DIR_ENV} to a folder holding "
            f"{FILE_LIST}; or fetch {url} by hand, check that its sha256 is {known_hash} and "
            f"save it as {target / ARCHIVE_NAME} (the next run extracts it), or unzip it so "
            f"that the three files lie directly in {target}",
        ) from err
    except ValueError as err:  # pooch's digest mismatch
        raise DataError(
            f"could not retrieve a verified copy of {url}: {err}",
            path=target / ARCHIVE_NAME,
            fix=f"rerun to download again; if it keeps failing, download {url} yourself, "
            f"check its sha256 is {known_hash}, unzip it and set {DATA_DIR_ENV} to that folder",
        ) from err


def _in_a_few_words(err: BaseException) -> str:
    """The error's type and its root cause, e.g. "ConnectionError: [Errno -2] Name or service
    not known", rather than requests' nested retry and connection-pool wrappers."""
    root, seen = err, {id(err)}
    while cause := root.__cause__ or (None if root.__suppress_context__ else root.__context__):
        if id(cause) in seen:  # a chain can be made circular by hand
            break
        root = cause
        seen.add(id(root))
    text = " ".join(f"{type(err).__name__}: {root}".split())
    return text if len(text) <= _FEW_WORDS else text[: _FEW_WORDS - 1] + "…"


def _prepare_cache_folder(folder: Path) -> None:
    """Create `folder` if needed and check that files can be written in it, or raise a
    DataError naming it, what is wrong and how to fix it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        problem, cause = "it is a file, not a folder", err
    except NotADirectoryError as err:
        problem, cause = "a part of its path is a file, not a folder", err
    except PermissionError as err:
        problem, cause = f"no permission to create it ({err.strerror})", err
    except OSError as err:
        problem, cause = f"it cannot be created ({err.strerror or err})", err
    else:
        try:
            with tempfile.TemporaryFile(dir=folder):
                return
        except PermissionError as err:
            problem, cause = f"no permission to write files in it ({err.strerror})", err
        except OSError as err:
            problem, cause = f"files cannot be written in it ({err.strerror or err})", err
    raise DataError(
        f"the download cache cannot be used: {problem}", path=folder, fix=CACHE_FOLDER_FIX
    ) from cause


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
                if not is_verified(target):
                    _extract_to(zf, members[name], target, fix)
                files[split] = target
            return files
    except zipfile.BadZipFile as err:
        raise DataError(f"not a valid zip archive: {err}", path=archive, fix=fix) from err


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_verified(path: Path) -> bool:
    """Whether `path` is a file whose sha256 is the published one for its name."""
    return path.is_file() and file_sha256(path) == MEMBER_SHA256[path.name]


def _extract_to(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, fix: str) -> None:
    try:
        _extract_one(zf, info, target, fix)
    except OSError as err:  # e.g. the disk is full: not the download's fault
        raise DataError(
            f"cannot write the extracted file ({err.strerror or err})",
            path=target,
            fix=CACHE_FOLDER_FIX,
        ) from err


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
