"""The environment of a child Python process that a test starts on this checkout."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """This process's environment with the repository's root first on the child's import
    path, and whatever ``PYTHONPATH`` already held after it (where the dependencies may be,
    as on a machine that installs them with ``pip --target``)."""
    held = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *([held] if held else [])])}
