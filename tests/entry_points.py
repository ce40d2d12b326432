"""An engine installed by a package, as ``pip install`` would register it: a module in
``sys.modules`` and an entry point in the oracle's group, for a test's duration."""

from __future__ import annotations

import importlib.metadata
import sys
import types

from comparisons.run.under_test import ENTRY_POINTS


def install_engine(monkeypatch, name: str, module_name: str, factory) -> types.ModuleType:
    """Register ``factory`` as the entry point ``name`` of a module ``module_name`` (its
    attribute ``make``); returns the module."""
    module = types.ModuleType(module_name)
    module.make = factory
    monkeypatch.setitem(sys.modules, module_name, module)
    point = importlib.metadata.EntryPoint(name, f"{module_name}:make", ENTRY_POINTS)
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda group=None: [point] if group == ENTRY_POINTS else [],
    )
    return module
