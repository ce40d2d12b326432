"""Writing a report folder atomically: all of it, or nothing new.

The files are written into a fresh temporary folder beside the target, then swapped in with
renames on the same file system. A crash or Ctrl-C before the swap leaves the previous
report (if any) untouched and removes the partial folder; no reader ever sees a folder that
mixes two runs or holds half a file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Renderer = Callable[[dict], str]


def write_report_folder(
    report: dict, out: Path, renderers: Mapping[str, Renderer], json_name: str = "report.json"
) -> Path:
    """Write ``json_name`` and one file per renderer (``name -> render(report)``) into
    ``out``, replacing whatever report was there. Returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a report folder is not
    try:
        text = json.dumps(json_safe(report), indent=2, ensure_ascii=False, allow_nan=False)
        _write(staging / json_name, text + "\n")
        for name, render in renderers.items():
            _write(staging / name, render(report))
        _swap_in(staging, out)
    except BaseException:  # KeyboardInterrupt too: never leave the partial folder behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging``: the old folder is moved aside first, then removed."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)  # put the previous report back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(value: Any) -> Any:
    """NaN and infinities as the strings "NaN", "Infinity", "-Infinity" (JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
