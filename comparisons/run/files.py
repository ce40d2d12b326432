"""Every file the tool reads, read one guarded way: a config file, a recorded set's manifest
and arrays, an earlier bench.json.

A path is checked with ``stat`` before it is opened and again with ``fstat`` on what was
opened (a FIFO would block, ``/dev/zero`` never ends, a symlink may point anywhere): it must
be a regular file no larger than the caller's limit, and at most limit + 1 bytes are read
whatever it turns out to be. Text must be UTF-8; JSON must be standard JSON (no NaN or
Infinity), nested at most ``MAX_DEPTH`` deep; a ``.npz`` archive is opened from the bytes
read, without pickles, each member's header checked against the room left before its array is
allocated. Every failure is a ``FileError`` (bad input: exit 2) whose message names the file
and says what is wrong with it; none is a traceback, a hang or an exhausted memory.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import stat
import zipfile
import zlib
from typing import Any

import numpy as np

MAX_DEPTH = 64  # brackets: a manifest or bench.json nests a few levels
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


SHOWN = 200  # characters of a path shown in a message


class FileError(ValueError):
    """A file that cannot be used: missing, not a regular file, too large, not the format
    it should be, or corrupt (bad input, exit 2)."""


def echoed_path(path: str | bytes | os.PathLike, limit: int = SHOWN) -> str:
    """A path as written in messages: as given, cut to ``limit`` characters."""
    text = os.fsdecode(path)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def read_bytes(
    path: str | os.PathLike[str], limit: int, what: str = "file", hint: str = ""
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; FileError otherwise.
    ``what`` names the file in messages ("config file", "manifest"), ``hint`` what to give
    instead ("; give a TOML file")."""
    name = echoed_path(path)
    try:
        _check_regular(name, os.stat(path), limit, what, hint)
        fd = os.open(path, _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as f:
            _check_regular(name, os.fstat(f.fileno()), limit, what, hint)  # it may have changed
            data = f.read(limit + 1)
    except FileError:
        raise
    except OSError as err:
        raise FileError(f"{name}: cannot read the {what} ({err.strerror or err})") from None
    except ValueError:  # a NUL byte in the path
        raise FileError(f"{name}: not a usable file name") from None
    if len(data) > limit:
        raise FileError(f"{name}: larger than {limit} bytes; not a {what}")
    return data


def _check_regular(name: str, info: os.stat_result, limit: int, what: str, hint: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise FileError(f"{name}: a folder, not a {what}{hint}")
    if not stat.S_ISREG(info.st_mode):
        raise FileError(f"{name}: not a regular file (a device, pipe or socket){hint}")
    if info.st_size > limit:
        raise FileError(f"{name}: {info.st_size} bytes, larger than {limit}; not a {what}")


def decode(name: str, data: bytes, what: str = "file") -> str:
    """UTF-8 text (a UTF-8 byte-order mark is dropped); anything else says how to fix it."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FileError(f"{name}: UTF-16 text; save the file as UTF-8")
    if b"\x00" in data:
        raise FileError(f"{name}: a binary file (it holds NUL bytes), not a {what}")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise FileError(
            f"{name}, line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); "
            "save the file as UTF-8"
        ) from None


def read_text(path: str | os.PathLike[str], limit: int, what: str = "file", hint: str = "") -> str:
    return decode(echoed_path(path), read_bytes(path, limit, what, hint), what)


def read_json(path: str | os.PathLike[str], limit: int, what: str = "JSON file") -> Any:
    """A standard JSON document (no NaN, Infinity, or nesting beyond MAX_DEPTH)."""
    name = echoed_path(path)
    return parse_json(name, read_text(path, limit, what), what)


def parse_json(name: str, text: str, what: str = "JSON file") -> Any:
    depth = _depth(text)
    if depth > MAX_DEPTH:
        raise FileError(f"{name}: nested {depth} deep (at most {MAX_DEPTH}); not a {what}")

    def no_constant(word: str) -> None:
        raise ValueError(f"{word} is not JSON")

    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise FileError(f"{name}: not valid JSON ({err}); not a {what}") from None


# What the depth scan looks at: a string (its escapes skipped whole; one left open runs to
# the end of the text), or a bracket.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def _depth(text: str) -> int:
    """How deep the brackets of a JSON text nest, strings skipped (a bound, read in one pass:
    the parser is never given a text that would exhaust its recursion)."""
    deepest = depth = 0
    for token in _TOKENS.finditer(text):
        char = token.group()[0]
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def read_npz(
    path: str | os.PathLike[str], limit: int, room: int | None = None
) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` archive of at most ``limit`` bytes (no pickles), the arrays
    together at most ``room`` bytes (default: 8 × ``limit``, a compression ratio no real
    trace comes near), checked from each member's header before its array is allocated."""
    name = echoed_path(path)
    data = read_bytes(path, limit, ".npz archive")
    room = 8 * limit if room is None else room
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    raise FileError(f"{name}: holds {member.filename!r}, not a .npy array")
                with archive.open(member) as f:
                    shape, fortran, dtype = _header(f)
                    if dtype.hasobject:
                        raise FileError(f"{name}: {member.filename} holds Python objects")
                    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    room -= size
                    if room < 0:
                        raise FileError(
                            f"{name}: its arrays claim more than {8 * limit} bytes "
                            f"({member.filename}: shape {shape}); corrupt or not a recorded set"
                        )
                    raw = f.read(size + 1)
                if len(raw) != size:
                    raise FileError(f"{name}: {member.filename} is truncated or too long")
                array = np.frombuffer(raw, dtype=dtype).reshape(
                    shape, order="F" if fortran else "C"
                )
                arrays[member.filename.removesuffix(".npy")] = array.copy()
    except FileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, TypeError) as err:
        raise FileError(
            f"{name}: not a readable .npz archive ({type(err).__name__}: {err})"
        ) from None
    return arrays


def _header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """A .npy member's shape, order and dtype, from its header (never its data)."""
    magic = f.read(8)  # b"\x93NUMPY", then the format's major and minor version
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY":
        raise ValueError("not a .npy array (no magic string)")
    width = {1: 2, 2: 4}.get(magic[6])  # (3.0, UTF-8 names, is never written here)
    if width is None:
        raise ValueError(f".npy format version {magic[6]}.{magic[7]}")
    length = f.read(width)
    n = int.from_bytes(length, "little") if len(length) == width else -1
    if not 0 < n <= NPY_HEADER_LIMIT:
        raise ValueError(f".npy header of {n} bytes (at most {NPY_HEADER_LIMIT})")
    text = f.read(n)
    if len(text) != n:
        raise EOFError("the .npy header is cut short")
    return _parsed_header(width, length + text)


# NumPy's own limit on a header's length (np.load's max_header_size)
NPY_HEADER_LIMIT = 10_000


@functools.lru_cache(maxsize=4096)
def _parsed_header(width: int, header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """NumPy's reading of a header (its length and text), once per distinct header: a
    recorded set has tens of thousands of arrays but a few hundred distinct headers, and
    each reading is a parse of a Python literal."""
    read = (
        np.lib.format.read_array_header_1_0 if width == 2 else np.lib.format.read_array_header_2_0
    )
    return read(io.BytesIO(header))
