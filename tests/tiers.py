"""The quick tier's share of a long parametrization: every n-th case runs in it, the others
are marked slow (the full tier, which CI runs, takes them all). Different offsets let two
sweeps over the same list (the fault catalogue) put different cases in the quick tier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest


def every(n: int, values: Sequence, offset: int = 0, name: Callable = str) -> list:
    """``values`` as pytest params, every ``n``-th (from ``offset``) in the quick tier."""
    return [
        pytest.param(v, id=name(v), marks=[] if i % n == offset else [pytest.mark.slow])
        for i, v in enumerate(values)
    ]
