"""The bench's one way to import what it can run without.

The optional frameworks (torch, jax, optax), the reports extra (matplotlib, threadpoolctl)
and the references' modules (``reference.torch_mlp`` and the like, which import their
framework) are imported here, when a measurement needs them, never at the top of a module:
a scratch-only bench runs, and says what is missing, on an install that has none of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def load(module: str, *, missing_ok: bool = False) -> ModuleType | None:
    """``import module`` now; ImportError if it is not installed, or None with ``missing_ok``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if missing_ok:
            return None
        raise


def installed(*modules: str) -> bool:
    """Whether every one of ``modules`` is installed (found, not imported)."""
    return all(importlib.util.find_spec(m) is not None for m in modules)
