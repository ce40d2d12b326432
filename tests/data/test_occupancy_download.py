"""The download path, offline: a local zip served through pooch's downloader hook.

pooch itself runs for real (temporary file, digest check, rename); only the network is
replaced, by a downloader that copies a zip built here.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import socket
import zipfile
from pathlib import Path

import pytest
import requests

import data
import data.occupancy as occupancy
from data import (
    ARCHIVE_SHA256,
    ARCHIVE_URL,
    MEMBER_SHA256,
    SPLITS,
    DataError,
    download_occupancy,
    file_sha256,
    load_occupancy,
    occupancy_files,
)

URL = "https://example.invalid/occupancy+detection.zip"
NAMES = tuple(SPLITS.values())


def make_zip(path: Path, members: dict[str, bytes]) -> str:
    """Write a zip holding `members` (name -> bytes); return its sha256."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return file_sha256(path)


class Serve:
    """A pooch downloader that copies a local file and counts its calls."""

    def __init__(self, source: Path, fail_after: int | None = None) -> None:
        self.source = source
        self.fail_after = fail_after
        self.calls = 0

    def __call__(self, url: str, output_file: str, pooch: object) -> None:
        self.calls += 1
        data = self.source.read_bytes()
        with open(output_file, "wb") as out:
            if self.fail_after is None:
                out.write(data)
                return
            out.write(data[: self.fail_after])
        raise ConnectionError("connection reset halfway through the download")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def real_members(occupancy_dir) -> dict[str, bytes]:
    return {name: (occupancy_dir / name).read_bytes() for name in NAMES}


@pytest.fixture
def fake_members() -> dict[str, bytes]:
    return {name: b"not the real data\n" for name in NAMES}


@pytest.mark.realdata
@pytest.mark.parametrize("prefix", ["", "occupancy_data/"], ids=["flat", "in_a_folder"])
def test_download_extracts_verified_members(tmp_path, real_members, prefix):
    archive = tmp_path / "upstream.zip"
    digest = make_zip(archive, {prefix + n: b for n, b in real_members.items()})
    serve = Serve(archive)
    cache = tmp_path / "cache"

    files = download_occupancy(cache, url=URL, known_hash=digest, downloader=serve)

    assert {split: p.name for split, p in files.items()} == SPLITS
    assert all(file_sha256(p) == MEMBER_SHA256[p.name] for p in files.values())
    assert files_in(cache) == sorted([occupancy.ARCHIVE_NAME, *NAMES])  # no leftovers

    # A lost member is restored from the cached archive without downloading again.
    files["test"].unlink()
    download_occupancy(cache, url=URL, known_hash=digest, downloader=serve)
    assert serve.calls == 1 and file_sha256(files["test"]) == MEMBER_SHA256["datatest.txt"]


@pytest.mark.realdata
def test_occupancy_files_downloads_into_the_cache_once(tmp_path, real_members, monkeypatch):
    archive = tmp_path / "upstream.zip"
    serve = Serve(archive)
    download = functools.partial(
        download_occupancy, url=URL, known_hash=make_zip(archive, real_members), downloader=serve
    )
    monkeypatch.setattr(occupancy, "download_occupancy", download)
    monkeypatch.delenv("OCCUPANCY_DATA_DIR", raising=False)
    monkeypatch.setenv("BACKPROP_ORACLE_CACHE", str(tmp_path / "cache"))

    first = occupancy_files()
    second = occupancy_files()

    assert first == second
    assert first["train"] == tmp_path / "cache" / "occupancy" / "datatraining.txt"
    assert serve.calls == 1


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "sub/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt", "C:evil.txt"]
)
def test_unsafe_member_names_are_refused(tmp_path, fake_members, evil):
    archive = tmp_path / "upstream.zip"
    digest = make_zip(archive, {evil: b"pwned\n", **fake_members})
    cache = tmp_path / "deep" / "cache"

    with pytest.raises(DataError, match="unsafe path") as err:
        download_occupancy(cache, url=URL, known_hash=digest, downloader=Serve(archive))

    assert repr(evil) in str(err.value) and occupancy.ARCHIVE_NAME in str(err.value)
    assert files_in(cache) == [occupancy.ARCHIVE_NAME]  # verified archive, nothing extracted
    assert not list(tmp_path.rglob("evil.txt"))


def test_download_failing_midway_leaves_nothing(tmp_path, fake_members):
    archive = tmp_path / "upstream.zip"
    digest = make_zip(archive, fake_members)
    cache = tmp_path / "cache"

    with pytest.raises(DataError, match="connection reset halfway") as err:
        download_occupancy(
            cache, url=URL, known_hash=digest, downloader=Serve(archive, fail_after=100)
        )

    assert isinstance(err.value.__cause__, ConnectionError)
    assert files_in(cache) == []


def test_archive_with_wrong_digest_is_deleted(tmp_path, fake_members):
    archive = tmp_path / "upstream.zip"
    make_zip(archive, fake_members)
    cache = tmp_path / "cache"

    with pytest.raises(DataError, match="could not retrieve a verified copy") as err:
        download_occupancy(cache, url=URL, known_hash="0" * 64, downloader=Serve(archive))

    assert URL in str(err.value)
    assert files_in(cache) == []


def test_member_with_wrong_digest_is_not_left_in_the_cache(tmp_path, fake_members):
    archive = tmp_path / "upstream.zip"
    digest = make_zip(archive, fake_members)
    cache = tmp_path / "cache"

    with pytest.raises(DataError, match="has sha256") as err:
        download_occupancy(cache, url=URL, known_hash=digest, downloader=Serve(archive))

    expected = MEMBER_SHA256["datatraining.txt"]
    assert expected in str(err.value)
    assert hashlib.sha256(b"not the real data\n").hexdigest() in str(err.value)
    assert files_in(cache) == [occupancy.ARCHIVE_NAME]


def test_missing_member_is_reported(tmp_path, fake_members):
    archive = tmp_path / "upstream.zip"
    del fake_members["datatest2.txt"]
    digest = make_zip(archive, fake_members)

    with pytest.raises(DataError, match=r"'datatest2\.txt', found 0"):
        download_occupancy(tmp_path / "c", url=URL, known_hash=digest, downloader=Serve(archive))


def test_archive_that_is_not_a_zip_is_reported(tmp_path):
    archive = tmp_path / "upstream.zip"
    archive.write_bytes(b"<html>503 Service Unavailable</html>")
    digest = file_sha256(archive)

    with pytest.raises(DataError, match="not a valid zip") as err:
        download_occupancy(tmp_path / "c", url=URL, known_hash=digest, downloader=Serve(archive))

    assert "delete" in str(err.value)


# --- no network, or no usable cache: one DataError that says what to do ---------------------


class Offline:
    """A pooch downloader on a machine without a network: it fails as requests does there."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, url: str, output_file: str, pooch: object) -> None:
        self.calls += 1
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as err:
            raise requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='archive.ics.uci.edu', port=443): Max retries exceeded "
                "with url: /static/public/357/occupancy+detection.zip (Caused by "
                'NameResolutionError("<urllib3.connection.HTTPSConnection object at 0x7f>: '
                "Failed to resolve 'archive.ics.uci.edu' ([Errno -2] Name or service not known)\"))"
            ) from err


@pytest.fixture
def offline(monkeypatch, tmp_path) -> Offline:
    """No OCCUPANCY_DATA_DIR, the cache in tmp_path/cache, and no network."""
    offline = Offline()
    monkeypatch.setattr(
        occupancy, "download_occupancy", functools.partial(download_occupancy, downloader=offline)
    )
    monkeypatch.delenv("OCCUPANCY_DATA_DIR", raising=False)
    monkeypatch.setenv("BACKPROP_ORACLE_CACHE", str(tmp_path / "cache"))
    return offline


def test_failed_download_says_how_to_get_the_files_by_hand(tmp_path, offline):
    cache = tmp_path / "cache" / "occupancy"

    with pytest.raises(DataError) as err:
        load_occupancy()

    message = str(err.value)
    assert offline.calls == 1
    assert message.startswith(f"{cache}: ") and "download" in message
    assert "Name or service not known" in message  # the cause, in a few words
    assert "HTTPSConnectionPool" not in message and len(message.splitlines()) == 2
    archive = cache / occupancy.ARCHIVE_NAME
    for fix in ("OCCUPANCY_DATA_DIR", ARCHIVE_URL, ARCHIVE_SHA256, str(archive)):
        assert fix in err.value.fix
    assert isinstance(err.value.__cause__, requests.exceptions.ConnectionError)
    assert files_in(cache) == []


def _blocked_cache(tmp_path: Path, where: str) -> Path:
    """A value for BACKPROP_ORACLE_CACHE whose occupancy/ folder cannot be a folder."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    if where == "a_file":
        return blocker  # the cache would be blocker/occupancy
    if where == "under_a_file":
        return blocker / "deeper"
    root = tmp_path / "root"
    root.mkdir()
    (root / "occupancy").write_text("a file, not a folder\n")
    return root


@pytest.mark.parametrize("where", ["a_file", "under_a_file", "occupancy_is_a_file"])
def test_cache_that_cannot_be_a_folder_says_how_to_fix(tmp_path, monkeypatch, offline, where):
    monkeypatch.setenv("BACKPROP_ORACLE_CACHE", str(_blocked_cache(tmp_path, where)))
    cache = data.cache_dir()

    with pytest.raises(DataError, match="not a folder") as err:
        occupancy_files()

    assert str(err.value).startswith(f"{cache}: ")
    assert "BACKPROP_ORACLE_CACHE" in err.value.fix and "OCCUPANCY_DATA_DIR" in err.value.fix
    assert offline.calls == 0


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into a folder whatever its permissions, so chmod cannot make one read-only",
)
@pytest.mark.parametrize("read_only", ["parent", "cache"])
def test_read_only_cache_says_how_to_fix(tmp_path, monkeypatch, offline, read_only):
    root = tmp_path / "root"
    (root / "occupancy").mkdir(parents=True)
    if read_only == "parent":
        (root / "occupancy").rmdir()
    locked = root if read_only == "parent" else root / "occupancy"
    monkeypatch.setenv("BACKPROP_ORACLE_CACHE", str(root))
    locked.chmod(0o555)
    try:
        with pytest.raises(DataError, match="permission") as err:
            occupancy_files()
    finally:
        locked.chmod(0o755)

    assert str(err.value).startswith(f"{root / 'occupancy'}: ")
    assert "BACKPROP_ORACLE_CACHE" in err.value.fix and "OCCUPANCY_DATA_DIR" in err.value.fix
    assert offline.calls == 0


def test_data_never_changes_the_process_umask():
    # The umask is process-wide: setting it to create a cache folder would race other threads.
    for path in Path(data.__file__).parent.glob("*.py"):
        names = {
            node.attr if isinstance(node, ast.Attribute) else node.id
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute | ast.Name)
        }
        assert "umask" not in names, path
