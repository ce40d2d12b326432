"""Writing a report folder: the complete old report or the complete new one, never neither,
never a mix, whatever the signal and whenever it lands.

``--out`` may be a missing folder, an empty one, or one this tool wrote, recognised by the
marker file ``MARKER`` that lists the files it wrote there (``check_out_folder``). Anything
else is refused before any work starts, with an ``OutFolderError`` that says what to do.

The swap (``write_report_folder``):

1. The files are written into a staging folder beside the target, ``.NAME.partial-PID-HEX``,
   made by ``os.mkdir`` with the default mode (the umask applies and is never changed) and
   locked (``flock``) by its writer while it lives. The marker is written into it first
   (listing no files), and replaced, in one rename, by the one that lists them last.
2. Under a lock on the parent folder (which serializes the swaps into it: concurrent runs on
   one ``--out`` queue up and the last to swap wins), staging and target are exchanged in
   one atomic step, ``renameat2(RENAME_EXCHANGE)`` (Linux); the staging name then holds the
   old report, which is removed. At no instant is ``--out`` missing or mixed.
3. Where that exchange is missing (another OS, a file system without it), two renames:
   ``out`` to ``.NAME.old-PID-HEX``, then staging to ``out``. A kill between them leaves
   ``--out`` missing and the old report beside it; the next run first puts it back
   (``prepare_out_folder``, and again before its swap).

A SIGINT or SIGTERM the command line recorded (``comparisons.progress``) stops the write
between files and before the swap, which leaves the old report; those arriving during step 2
are held until the swap is done, then delivered.
A kill nothing can catch (SIGKILL, a power cut) leaves staging or old folders that no live
writer holds locked; the next write beside them removes them. Such a folder is recognised by
its name and by the marker inside it (or by being empty), never by its name alone: a user's
folder that happens to be called ``.NAME.old-1-deadbeef`` is neither removed nor moved into
``--out``. A file browser's files in ``--out`` (``LITTER``: ``.DS_Store``…) do not make it
foreign, and are moved into the new report, never deleted. Tests inject a kill at each
step through ``_kill_point``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import math
import os
import re
import secrets
import shutil
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from comparisons.run.files import echoed_path
from comparisons.run.interrupts import stop_if_signalled

try:
    import fcntl
except ImportError:  # Windows: no locks; the staging names still keep writers apart
    fcntl = None  # type: ignore[assignment]

Renderer = Callable[[dict], str | bytes]  # the file's text, or its bytes

MARKER = ".backprop-oracle-report"  # in every folder this tool writes: the files it wrote
WRITTEN_BY = "backprop-oracle"
LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # a file browser's, not a user's
SPECIAL = (Path("/proc"), Path("/sys"), Path("/dev"))
# Staging and old folders: ours (PID-HEX), and those of earlier versions (tempfile's names).
_STAGED = re.compile(r"(partial|old)-(?:\d+-[0-9a-f]{8}|[a-z0-9_]{8})")
_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_kill_point: Callable[[str], None] | None = None  # tests: called at each step of a write


class OutFolderError(ValueError):
    """``--out`` cannot hold the report: what is wrong with it and what to do instead."""


def check_out_folder(out: str | os.PathLike[str]) -> Path:
    """The real path of ``--out`` if it may hold a report; else OutFolderError. Writes
    nothing."""
    shown = echoed_path(out)
    try:
        real = Path(os.path.realpath(out))
        cwd = Path(os.path.realpath(os.getcwd()))
    except (OSError, ValueError) as err:
        raise OutFolderError(f"--out {shown}: not a usable path ({_why(out, err)})") from None
    if real == cwd or real in cwd.parents:
        raise OutFolderError(
            f"--out {shown}: the current folder (or one above it) cannot be the report "
            "folder, which is replaced as a whole; name a folder of its own, e.g. reports/run"
        )
    _check_place(real, shown)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        _check_creatable(real, shown)
        return real
    except (OSError, ValueError) as err:
        raise OutFolderError(f"--out {shown}: cannot be used ({_why(out, err)})") from None
    if not stat.S_ISDIR(info.st_mode):
        raise OutFolderError(f"--out {shown}: a file, not a folder; choose a folder name")
    if os.path.ismount(real):
        raise OutFolderError(f"--out {shown}: a mount point; name a folder inside it")
    foreign = _foreign(real, shown)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        names = ", ".join(echoed_path(n, 40) for n in foreign[:3]) + more
        raise OutFolderError(
            f"--out {shown} holds files this tool did not write ({names}), and the report "
            "folder is replaced as a whole; name a new folder for the report, e.g. "
            "reports/run"
        )
    if not (os.access(real.parent, os.W_OK | os.X_OK) and os.access(real, os.W_OK | os.X_OK)):
        raise OutFolderError(f"--out {shown}: no permission to replace it; choose another folder")
    return real


def prepare_out_folder(out: str | os.PathLike[str]) -> Path:
    """``check_out_folder``, then, if a killed run left ``--out`` missing and its old report
    beside it, put that report back. Call it before any work starts."""
    real = check_out_folder(out)
    if real.parent.is_dir():
        with _locked(real.parent):
            _recover(real)
    return real


def write_report_folder(
    report: dict, out: Path, renderers: Mapping[str, Renderer], json_name: str = "report.json"
) -> Path:
    """Write ``json_name`` and one file per renderer (``name -> render(report)``) into
    ``out``, replacing the report that was there (see the module's docstring). Returns
    ``out``. An exception raised after the swap (a held signal) carries ``report_written``."""
    real = check_out_folder(out)
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutFolderError(
            f"--out {echoed_path(out)}: cannot be created ({err.strerror})"
        ) from None
    with _locked(real.parent):
        _recover(real)
        _remove_stale(real)
        staging, fd = _new_staging(real)
    swapped = False
    try:
        _step("staging")
        names = _write_files(staging, report, renderers, json_name)
        _step("written")
        _mark(staging, names)
        _step("marked")
        stop_if_signalled()  # the last moment a recorded signal keeps the old report
        with _signals_held(), _locked(real.parent):
            _step("locked")
            check_out_folder(out)  # files may have been put there during the run
            _swap_in(staging, real)
            swapped = True
        stop_if_signalled()  # one that came during the swap: the new report is in place
    except BaseException as err:  # KeyboardInterrupt too: never leave the partial folder
        shutil.rmtree(staging, ignore_errors=True)
        if swapped:
            err.report_written = Path(out)  # type: ignore[attr-defined]
        raise
    finally:
        os.close(fd)
    return Path(out)


# --- the checks ---------------------------------------------------------------------------


def _check_place(real: Path, shown: str) -> None:
    special = next((s for s in SPECIAL if real == s or s in real.parents), None)
    if special is not None:
        raise OutFolderError(
            f"--out {shown}: under {special}, a file system of the kernel; choose a folder on disk"
        )
    if len(os.fsencode(real.name)) > 200:  # leaves room for the staging folder's suffix
        raise OutFolderError(f"--out {shown}: a folder name over 200 bytes; choose a shorter one")


def _check_creatable(real: Path, shown: str) -> None:
    """A missing ``--out``: its nearest existing ancestor must be a folder we can write in."""
    ancestor = real.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        problem = f"{echoed_path(ancestor)} is a file, not a folder"
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        problem = f"no permission to write in {echoed_path(ancestor)}"
    else:
        return
    raise OutFolderError(f"--out {shown}: cannot be created, {problem}")


def _why(out: str | os.PathLike[str], err: Exception) -> str:
    """Why ``os.stat`` failed, in words: the file in the path, or the system's reason."""
    if isinstance(err, NotADirectoryError):
        ancestor = Path(os.path.abspath(out)).parent
        while ancestor != ancestor.parent and not ancestor.is_file():
            ancestor = ancestor.parent
        return f"{echoed_path(ancestor)} is a file, not a folder"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    return "it holds a NUL byte" if "null" in str(err) else str(err)


def _foreign(real: Path, shown: str) -> list[str]:
    """The entries of ``real`` this tool did not write (by its marker), sorted."""
    try:
        names = sorted(set(os.listdir(real)) - LITTER)
    except OSError as err:
        raise OutFolderError(f"--out {shown}: cannot read it ({err.strerror})") from None
    written = _marked_files(real / MARKER) if names else set()
    return [n for n in names if n not in written]


def _is_marker(marker: Path) -> bool:
    return bool(_marked_files(marker))


def _marked_files(marker: Path) -> set[str]:
    """The files a marker lists, and the marker itself; nothing if it is not a marker."""
    try:
        info = os.lstat(marker)  # never open a FIFO or a device put there in its place
        ok = stat.S_ISREG(info.st_mode) and info.st_size < 65536
        files = json.loads(marker.read_text(encoding="utf-8"))["files"] if ok else None
    except (OSError, ValueError, KeyError, TypeError):
        files = None
    valid = isinstance(files, list) and all(isinstance(f, str) for f in files)
    return {*files, MARKER} if valid else set()


# --- the swap -----------------------------------------------------------------------------


def _step(name: str) -> None:
    if _kill_point is not None:
        _kill_point(name)


# Set (the test suite sets it for itself and every process it starts), every report is
# checked against its JSON Schema (comparisons/schemas/) before it is written.
VALIDATE_ENV = "BACKPROP_ORACLE_VALIDATE"


def _write_files(
    staging: Path, report: dict, renderers: Mapping[str, Renderer], json_name: str
) -> list[str]:
    document = json_safe(report)
    if os.environ.get(VALIDATE_ENV) and "schema_version" in report:
        from comparisons.report.schema import SCHEMAS, validate  # needs jsonschema

        if json_name in SCHEMAS:
            validate(json.loads(json.dumps(document)), json_name)
    _write(staging / json_name, json_text(document) + "\n")
    for name, render in renderers.items():
        _write(staging / name, render(report))
    return [json_name, *renderers]


def _write(path: Path, text: str | bytes) -> None:
    stop_if_signalled()  # between files (a plot takes a while to draw)
    with open(path, "wb") as f:
        f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def _mark(folder: Path, names: list[str]) -> None:
    """Write (or replace, in one rename) the marker that makes ``folder`` this tool's."""
    text = json.dumps({"written_by": WRITTEN_BY, "files": names})
    temporary = folder / f"{MARKER}.new"
    _write(temporary, text)
    os.replace(temporary, folder / MARKER)


def _ours(folder: Path) -> bool:
    """Whether ``folder`` (a staging or old folder's name) is this tool's: it holds the
    marker, written first thing into every staging folder and last into every report; or it
    is empty (a kill before the marker; removing it loses nothing). A user's folder that
    merely has such a name is neither, and is left alone."""
    try:
        if not os.listdir(folder):
            return True
    except OSError:
        return False
    return _is_marker(folder / MARKER)


def _staged(real: Path, kind: str) -> Path:
    return real.parent / f".{real.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def _new_staging(real: Path) -> tuple[Path, int]:
    """A new staging folder (default mode: the umask applies) and a descriptor holding its
    lock. Called under the parent's lock, so no cleanup sees it before it is locked."""
    staging = _staged(real, "partial")
    os.mkdir(staging)
    fd = os.open(staging, os.O_RDONLY)
    _flock(fd, blocking=False)
    try:
        _mark(staging, [])  # first: what makes the folder recognisably this tool's
    except BaseException:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, fd


def _swap_in(staging: Path, real: Path) -> None:
    """Put ``staging`` at ``real``; the old report, if any, is removed."""
    if not os.path.lexists(real):
        os.rename(staging, real)
        _step("renamed")
        return
    try:
        _exchange(staging, real)
    except _NoExchange:
        _swap_by_renames(staging, real)
        return
    _step("exchanged")
    _carry_litter(staging, real)
    shutil.rmtree(staging, ignore_errors=True)  # the old report, now under the staging name
    _step("removed")


def _swap_by_renames(staging: Path, real: Path) -> None:
    old = _staged(real, "old")
    os.rename(real, old)
    try:
        _step("moved-aside")
        os.rename(staging, real)
    except BaseException:
        os.rename(old, real)  # put the previous report back
        raise
    _step("moved-in")
    _carry_litter(old, real)
    shutil.rmtree(old, ignore_errors=True)
    _step("removed")


def _carry_litter(old: Path, new: Path) -> None:
    """A file browser's files (``LITTER``) in the old folder move into the new one: they may
    hold the user's own settings, and the tool deletes nothing it did not write."""
    for name in LITTER:
        if os.path.lexists(old / name) and not os.path.lexists(new / name):
            with contextlib.suppress(OSError):
                os.rename(old / name, new / name)


class _NoExchange(Exception):
    """renameat2(RENAME_EXCHANGE) is not available here: swap with two renames."""


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library older than glibc 2.28
        return None
    int_, path = ctypes.c_int, ctypes.c_char_p
    function.argtypes = [int_, path, int_, path, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(a: Path, b: Path) -> None:
    """Swap the names ``a`` and ``b`` in one atomic step."""
    function = _renameat2()
    if function is None:
        raise _NoExchange
    at_fdcwd, rename_exchange = -100, 2  # from <fcntl.h> and <linux/fs.h>
    if function(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        raise _NoExchange
    raise OSError(code, os.strerror(code), os.fspath(b))


def _leftovers(real: Path) -> Iterator[tuple[str, Path]]:
    """(kind, path) of each staging or old folder of ``real`` in its parent."""
    prefix = f".{real.name}."
    with os.scandir(real.parent) as entries:
        for entry in entries:
            rest = entry.name[len(prefix) :] if entry.name.startswith(prefix) else ""
            match = _STAGED.fullmatch(rest)
            if match and entry.is_dir(follow_symlinks=False) and _ours(Path(entry.path)):
                yield match[1], Path(entry.path)


def _recover(real: Path) -> None:
    """If ``real`` is missing but a killed swap left the old report beside it, put it back."""
    if os.path.lexists(real):
        return
    olds = [path for kind, path in _leftovers(real) if kind == "old"]
    if olds:
        os.rename(max(olds, key=lambda p: p.stat().st_ctime), real)


def _remove_stale(real: Path) -> None:
    """Remove the staging and old folders of ``real`` that no live writer holds."""
    for _, path in _leftovers(real):
        with _locked(path, blocking=False) as free:
            if free:  # no live writer holds it
                shutil.rmtree(path, ignore_errors=True)


def _flock(fd: int, blocking: bool = True) -> bool:
    """Take the exclusive lock on ``fd``; whether it was taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except (OSError, AttributeError):  # held elsewhere, unsupported, or no fcntl (Windows)
        return False
    return True


@contextlib.contextmanager
def _locked(folder: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the lock on ``folder``; yields whether it was taken (where locks are missing: no)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        yield _flock(fd, blocking)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then are delivered to the handlers
    that were in place (only the main thread can change handlers; elsewhere, no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _: pending.append(signum)) for s in _HELD_SIGNALS
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if pending:
            signal.raise_signal(pending[0])


def json_safe(value: Any) -> Any:
    """NaN and infinities as the strings "NaN", "Infinity", "-Infinity" (JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_text(document: Mapping[str, Any]) -> str:
    """``document`` as JSON indented by two, except that a top-level list of records (a
    report's ``per_step``) has one record a line: a run's 1,630 steps are 1,630 lines to read
    or diff instead of 52,215, and written by json's C encoder (indentation makes it use
    the pure-Python one: 0.13 s against 0.07 s for the Occupancy report)."""

    def dumps(value: Any, **layout: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, **layout)

    fields = []
    for key, value in document.items():
        if isinstance(value, list) and len(value) > 1 and all(isinstance(v, dict) for v in value):
            rows = ",\n".join("    " + dumps(row) for row in value)
            text = f"[\n{rows}\n  ]"
        else:
            text = dumps(value, indent=2).replace("\n", "\n  ")
        fields.append(f"  {dumps(key)}: {text}")
    return "{\n" + ",\n".join(fields) + "\n}" if fields else "{}"
