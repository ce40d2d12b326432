"""Random input through the CLI's entry function: random ``--set`` keys and values (unicode,
control characters, huge numbers, NaN, lists, nested TOML) and random byte edits of the data
files. The exit status is always a documented one, no traceback is printed, and a bad input
is one line.

Values of the keys that size a run (epochs, rows, widths, batch) are drawn small or absurd,
never large and valid, so that every example stays a run of milliseconds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comparisons import cli
from comparisons.run.spec import HINTS

SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=12", "--set", "epochs=1"]
DOCUMENTED = {0, 1, 2, 3}
SOURCE = Path(os.environ.get("OCCUPANCY_DATA_DIR") or "/work/shared/data/occupancy")
FILES = ("datatraining.txt", "datatest.txt", "datatest2.txt")
SIZING = {"epochs", "synthetic_rows", "synthetic_features", "synthetic_classes", "batch_size"}
FUZZ = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

TOML_SPECIALS = st.sampled_from(
    [
        "nan", "+nan", "inf", "-inf", "true", "false", "[]", "[1, 2]", "[[1], 2]", "{a = 1}",
        "{a = {b = [1]}}", '"tanh"', "'sgd'", "1979-05-27", "0x10", "1_000", "'", '"', "[",
        "=", "", "[1, 2", "1e400", "-0.0", "5e-324", "[1e308]", '["scratch", "torch"]',
        "[\"scratch\"]", "adam", "adamw", "nesterov", "relu", "softmax_cross_entropy",
        "sigmoid", "bce", "mse", "float32", "he_normal", "synthetic",
    ]
)  # fmt: skip
FLOATS = st.floats(allow_nan=True, allow_infinity=True).map(lambda f: "nan" if f != f else repr(f))
ABSURD = st.integers(min_value=2**63).map(str) | st.integers(max_value=-(2**63)).map(str)
SMALL_INTS = st.integers(min_value=-3, max_value=9).map(str)
WIDTHS = st.lists(st.integers(min_value=-1, max_value=12), max_size=4).map(
    lambda widths: "[" + ", ".join(map(str, widths)) + "]"
)
KEYS = st.sampled_from(sorted(HINTS)) | st.text(max_size=12)


@st.composite
def assignment(draw) -> str:
    key = draw(KEYS)
    values = [TOML_SPECIALS, FLOATS, ABSURD, SMALL_INTS, WIDTHS, st.text(max_size=20)]
    if key not in SIZING and key != "hidden":
        values.append(st.integers().map(str))  # any integer: nothing here sizes the run
    return f"{key}={draw(st.one_of(values))}"


def assert_documented(code: int, err: str) -> None:
    assert code in DOCUMENTED, err
    assert "Traceback" not in err, err
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.filterwarnings("ignore")  # a diverging run warns of overflow, as it should
@FUZZ
@given(
    command=st.sampled_from(["run", "run", "drift", "gradcheck", "train"]),
    assignments=st.lists(assignment(), min_size=1, max_size=3),
)
def test_random_settings_end_in_a_documented_exit_status(tmp_path, capsys, command, assignments):
    out = tmp_path / "out"
    argv = [command, *SMALL, *(a for text in assignments for a in ("--set", text)), "--quiet"]
    if command != "train":
        argv += ["--engines", "scratch", "--out", str(out)]
    code = cli.main(argv)
    assert_documented(code, capsys.readouterr().err)
    if command != "train" and code != 2:  # a verdict: the report is all there
        assert json.loads((out / "report.json").read_text(encoding="utf-8"))["verdict"]


@pytest.fixture(scope="module")
def data_copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("occupancy")
    for name in FILES:
        shutil.copyfile(SOURCE / name, folder / name)
    return folder


EDITS = st.tuples(
    st.sampled_from(FILES),
    st.sampled_from(["flip", "truncate", "insert"]),
    st.integers(min_value=0, max_value=2**20),
    st.binary(min_size=1, max_size=8),
)


def edited(content: bytes, kind: str, position: int, extra: bytes) -> bytes:
    at = position % max(len(content), 1)
    if kind == "flip":
        return content[:at] + bytes([content[at] ^ (extra[0] or 1)]) + content[at + 1 :]
    if kind == "truncate":
        return content[:at]
    return content[:at] + extra + content[at:]


@pytest.mark.filterwarnings("ignore")
@settings(FUZZ, max_examples=25)
@given(edits=st.lists(EDITS, min_size=1, max_size=3))
def test_random_byte_edits_of_the_data_end_in_a_documented_exit_status(
    data_copy, monkeypatch, capsys, edits
):
    monkeypatch.setenv("OCCUPANCY_DATA_DIR", str(data_copy))
    originals = {name: (SOURCE / name).read_bytes() for name in FILES}
    try:
        for name, kind, position, extra in edits:
            path = data_copy / name
            path.write_bytes(edited(path.read_bytes(), kind, position, extra))
        changed = any((data_copy / n).read_bytes() != originals[n] for n in FILES)
        code = cli.main(["train", "--quiet", "--set", "epochs=1"])
    finally:
        for name, content in originals.items():
            (data_copy / name).write_bytes(content)
    assert_documented(code, capsys.readouterr().err)
    assert code == 2 or not changed  # an edited file never passes its sha256
