"""``oracle/divergence.py`` on its own: the first non-finite value in dataflow order, an
engine's exception as a failure with the tensors it had computed, and a divergence's text."""

from __future__ import annotations

import numpy as np

from comparisons.oracle.compare import mismatch
from comparisons.oracle.divergence import (
    MESSAGE_CHARS,
    Divergence,
    engine_failure,
    first_nonfinite,
)
from data.schedule import Step


def test_the_first_non_finite_value_is_found_in_the_order_given_not_the_traces():
    trace = {"A1": np.array([[1.0, np.inf]]), "Z1": np.array([[0.0, 2.0], [np.nan, 1.0]])}
    tensor, index, value = first_nonfinite(trace, ["Z1", "A1"])
    assert (tensor, index) == ("Z1", (1, 0)) and np.isnan(value)
    assert first_nonfinite(trace, ["A1", "Z1"]) == ("A1", (0, 1), float("inf"))


def test_a_finite_trace_and_names_it_lacks_give_nothing():
    assert first_nonfinite({"Z1": np.ones((2, 2))}, ["W1", "Z1", "loss"]) is None


def _step_that_raises(X):
    trace = {"Z1": X * 2.0, "A1": np.tanh(X)}  # what the engine had computed
    raise ValueError("operands could not be broadcast " + "x" * 500)
    return trace  # pragma: no cover


def test_an_exception_is_a_failure_naming_where_it_raised_and_what_was_computed():
    X = np.ones((2, 3))
    try:
        _step_that_raises(X)
    except ValueError as error:
        failure, partial = engine_failure("scratch", "tests", Step(4, 1, 2, np.arange(2)), error)
    assert (failure.step, failure.epoch, failure.batch) == (4, 1, 2)
    assert failure.error == "ValueError" and "_step_that_raises" in failure.where
    assert failure.where.startswith("tests/comparisons/oracle/test_divergence.py:")
    assert sorted(partial) == ["A1", "Z1"] and np.array_equal(partial["Z1"], X * 2.0)
    assert len(failure.message) == MESSAGE_CHARS + 1 and failure.message.endswith("…")


def test_a_divergence_says_where_what_and_what_still_agreed_upstream():
    c = mismatch("dW2", "torch", "shape (3, 2), not (2, 3)")
    text = Divergence(7, 1, 3, c, ["X", "Y", "Z1", "A1", "Z2", "A2"], "backward").describe()
    assert text.startswith("first divergence at step 7 (epoch 1, batch 3): dW2 (gradient")
    assert "upstream still agreed: …, Z1, A1, Z2, A2" in text
    assert Divergence(7, 1, 3, c, [], "").as_dict()["upstream_agreed"] == []
