"""Applying a fault to scratch in memory: one function recompiled from its source with one
edit, or a constant swapped; everything restored on exit. Files on disk are never touched.

A function that a lookup table also holds (``ACTIVATIONS``, ``LOSSES``, ``RULES``) is
replaced in the table too, so that code which looks it up by name runs the edited copy.
"""

from __future__ import annotations
import __future__

import contextlib
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from unittest import mock


def recompiled(module: ModuleType, name: str, old: str, new: str) -> Callable:
    """``module.name`` recompiled from its source with ``old`` replaced by ``new`` (once).

    The new function keeps the module's globals, so it calls the module's other functions.
    """
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    if source.count(old) != 1:
        raise ValueError(f"{module.__name__}.{name}: expected one {old!r} in its source")
    code = compile(
        source.replace(old, new),
        f"<fault in {module.__name__}.{name}>",
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    namespace: dict = {}
    exec(code, module.__dict__, namespace)
    return namespace[name]


def _table_patches(module: ModuleType, original: Callable, replacement: Callable) -> list:
    """Patches for every module-level dict that holds ``original``, as a value or inside a
    named tuple value (``Activation(forward, derivative)``)."""
    patches = []
    for table in vars(module).values():
        if not isinstance(table, dict):
            continue
        for key, value in table.items():
            if value is original:
                patches.append(mock.patch.dict(table, {key: replacement}))
            elif isinstance(value, tuple) and hasattr(value, "_replace"):
                fields = [f for f, v in zip(value._fields, value, strict=True) if v is original]
                if fields:
                    edited = value._replace(**dict.fromkeys(fields, replacement))
                    patches.append(mock.patch.dict(table, {key: edited}))
    return patches


@contextlib.contextmanager
def edited_function(module: ModuleType, name: str, old: str, new: str) -> Iterator[None]:
    """While active, ``module.name`` (and every table entry holding it) is the function with
    one edit (see ``recompiled``)."""
    original = getattr(module, name)
    replacement = recompiled(module, name, old, new)
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(module, name, replacement))
        for patch in _table_patches(module, original, replacement):
            stack.enter_context(patch)
        yield


@dataclass(frozen=True)
class Edit:
    """A fault's patch: one edit of one function, applied when the fault runs."""

    module: ModuleType
    function: str
    old: str
    new: str

    def __call__(self) -> contextlib.AbstractContextManager:
        return edited_function(self.module, self.function, self.old, self.new)

    @property
    def where(self) -> str:
        """The edited function, as the trace schema's "look at" pointers name functions."""
        return f"{self.module.__name__.replace('.', '/')}.py:{self.function}"


def edit(module: ModuleType, function: str, old: str, new: str) -> Edit:
    return Edit(module, function, old, new)
