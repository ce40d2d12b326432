"""The hardened reader's scans (comparisons/run/files.py), against plain definitions."""

from __future__ import annotations

import io
import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from comparisons.run.files import _depth, _header


def depth_by_characters(text: str) -> int:
    """The bracket depth of a JSON text, strings skipped, one character at a time."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@given(st.text(alphabet='[]{}"\\ab,:\n', max_size=60))
def test_the_depth_scan_is_the_character_by_character_one(text):
    assert _depth(text) == depth_by_characters(text)


def test_the_depth_of_real_json_skips_brackets_in_strings():
    document = {"a": [1, {"b": "]]][[[{{"}], "c": '\\"[', "d": [[[]]]}
    assert _depth(json.dumps(document)) == 4


def test_a_header_read_twice_is_read_the_same(rng):
    """Headers are parsed once per distinct text: the same header read again gives the same
    shape, order and dtype, and another header its own."""
    for array in (rng.normal(size=(3, 4)), np.zeros(5, np.float32), np.asfortranarray(np.eye(2))):
        for _ in range(2):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array)
            buffer.seek(0)
            shape, fortran, dtype = _header(buffer)
            assert (shape, dtype) == (array.shape, array.dtype)
            assert fortran == (array.flags.f_contiguous and not array.flags.c_contiguous)
