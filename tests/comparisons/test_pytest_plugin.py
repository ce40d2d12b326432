"""The pytest plugin (comparisons/pytest_plugin.py): the oracle inside a user's own tests.

The project's own tests use it for scratch here; the outside tests run a test file in a
pytest of its own (``pytester``), which sees this project only through the installed plugin.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

pytestmark = [pytest.mark.torch, pytest.mark.jax]


def test_scratch_agrees_through_the_plugin(assert_lockstep):
    report = assert_lockstep("scratch", {"optimizer": "adam", "lr": 0.01}, engines=("torch",))
    assert report["verdict"] == "agree" and report["under_test"]["name"] == "scratch"


def test_the_fixture_saves_its_report_under_tmp_path(assert_lockstep, tmp_path):
    assert_lockstep("scratch", engines=("torch",))
    assert (tmp_path / "lockstep-report" / "report.html").is_file()


EXAMPLE = Path(__file__).parents[2] / "examples" / "layered_mlp.py"

# A user's own test file: it knows the plugin's fixture and its own engine, nothing else.
OUTSIDE = """
from layered_mlp import make_engine


def test_my_backprop(assert_lockstep):
    assert_lockstep(make_engine, {"optimizer": "adam", "lr": 0.01, "hidden": [4, 3]})
"""
SOUND = "self.db = dz.sum(axis=0)"
BROKEN = "self.db = dz.mean(axis=0)"  # the bias gradient averaged instead of summed


def _project(pytester, engine_source: str) -> None:
    pytester.makepyfile(layered_mlp=engine_source, test_outside=OUTSIDE)


@pytest.mark.slow
def test_an_outside_test_passes_on_the_example(pytester):
    _project(pytester, EXAMPLE.read_text(encoding="utf-8"))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_an_outside_test_fails_on_a_broken_copy_with_the_documented_message(pytester):
    source = EXAMPLE.read_text(encoding="utf-8")
    assert source.count(SOUND) == 1
    _project(pytester, source.replace(SOUND, BROKEN))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "DISAGREE:" in text
    assert "engine under test: layered_mlp (layered_mlp:make_engine; file " in text
    first = r"first divergence: epoch 0, step 0 \(batch 0\): db3 \(gradient, layer 3\)"
    assert re.search(first, text)
    assert "upstream still agreed: Z1, A1, Z2, A2, Z3, A3, loss, dZ3, dW3" in text
    assert "who is wrong: layered_mlp is wrong: torch, jax and finite" in text
    assert (
        "look at: layered_mlp:make_engine: where it computes db3 = Σ over the batch of dZ3" in text
    )
    report = re.search(r"report: (\S+report\.html)", text)
    assert report is not None and Path(report.group(1)).is_file()
