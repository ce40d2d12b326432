"""The pytest plugin (comparisons/pytest_plugin.py): the oracle inside a user's own tests.

The project's own tests use it for scratch here; the outside tests run a test file in a
pytest of its own (``pytester``), which sees this project only through the installed plugin.
"""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

pytestmark = [pytest.mark.torch, pytest.mark.jax]


def test_scratch_agrees_through_the_plugin(assert_lockstep):
    report = assert_lockstep("scratch", {"optimizer": "adam", "lr": 0.01})
    assert report["verdict"] == "agree" and report["under_test"]["name"] == "scratch"


def test_the_fixture_saves_its_report_under_tmp_path(assert_lockstep, tmp_path):
    assert_lockstep("scratch", engines=("torch",))
    assert (tmp_path / "lockstep-report" / "report.html").is_file()


OUTSIDE = '''
from scratch.network import forward
from scratch.training import train_step


class Mine:
    """A user's engine: scratch's step, behind the contract, with {fault}."""

    def __init__(self, mlp, optimizer, dtype):
        self.mlp, self.opt = mlp, optimizer

    def set_state(self, params, opt_state):
        self.params, self.state_ = dict(params), dict(opt_state)

    def state(self):
        return self.params, self.state_

    def step(self, X, Y):
        trace, self.params, self.state_ = train_step(
            self.mlp, self.opt, self.params, self.state_, X, Y
        )
        {edit}
        return trace

    def predict(self, X):
        return forward(self.mlp, self.params, X)[f"A{{self.mlp.n_layers}}"]


def test_mine(assert_lockstep):
    assert_lockstep(Mine, {{"hidden": [4, 3]}})
'''


@pytest.mark.slow
def test_an_outside_test_passes_on_a_sound_engine(pytester):
    pytester.makepyfile(test_outside=OUTSIDE.format(fault="no fault", edit="pass"))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_an_outside_test_fails_with_the_first_divergence_and_the_report(pytester):
    edit = 'trace["db1"] = trace["db1"] * 1.001'
    pytester.makepyfile(test_outside=OUTSIDE.format(fault="a wrong db1", edit=edit))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "DISAGREE:" in text
    assert "engine under test: test_outside:Mine" in text
    assert re.search(
        r"first divergence: epoch 0, step 0 \(batch 0\): db1 \(gradient, layer 1\)", text
    )
    assert "who is wrong: test_outside:Mine is wrong: torch, jax and finite differences" in text
    assert "look at: test_outside:Mine: where it computes db1 = " in text
    report = re.search(r"report: (\S+report\.html)", text)
    assert report is not None and pytester.path.joinpath(report.group(1)).is_file()
