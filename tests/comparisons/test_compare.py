"""The comparison helper and the tolerance table: passes what it should, names what it fails."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.oracle.compare import assert_traces_agree, compare, compare_traces
from comparisons.oracle.tolerances import TABLES, tolerance
from scratch.trace_schema import KINDS, kind_of, layer_of


@pytest.mark.parametrize(
    ("name", "kind", "layer"),
    [
        ("Z2", "forward", 2),
        ("A10", "forward", 10),
        ("loss", "loss", None),
        ("dZ3", "error_term", 3),
        ("dW1", "gradient", 1),
        ("db2", "gradient", 2),
        ("ΔW1", "update", 1),
        ("adam_v_b2", "optimizer_state", 2),
        ("momentum_W3", "optimizer_state", 3),
        ("W4", "parameter", 4),
    ],
)
def test_trace_names_map_to_kinds_and_layers(name, kind, layer):
    assert (kind_of(name), layer_of(name)) == (kind, layer)


def test_every_float64_tolerance_is_at_most_1e_9_and_has_a_reason():
    for table in TABLES.values():
        assert set(table) == set(KINDS)
        assert all(tol.reason for tol in table.values())
    assert max(tol.rtol for tol in TABLES["float64"].values()) <= 1e-9


def test_identical_tensors_agree(rng):
    a = rng.normal(size=(4, 3))
    c = compare("dW1", a, a.copy(), "torch")
    assert c.ok and c.max_abs == 0 and c.ratio == 0


def test_a_difference_within_rtol_passes_and_one_beyond_fails(rng):
    b = rng.normal(size=(5, 2)) + 3.0  # no entry near zero
    rtol = tolerance("float64", "dW1").rtol
    assert compare("dW1", b * (1 + 0.5 * rtol), b, "torch").ok
    assert not compare("dW1", b * (1 + 3 * rtol), b, "torch").ok


def test_the_failure_names_the_worst_element_both_values_and_the_allowance():
    b = np.zeros((3, 4)) + 1.0
    a = b.copy()
    a[2, 1] = 1.5
    c = compare("dZ2", a, b, "jax")
    assert not c.ok and c.index == (2, 1)
    text = c.describe("step 7 (epoch 0, batch 7)")
    assert text.startswith("step 7 (epoch 0, batch 7): dZ2[2, 1] scratch=1.5 jax=1 ")
    assert "|diff|=0.5" in text and "allowed=" in text


def test_atol_is_scaled_to_the_tensor_so_near_zero_entries_do_not_alarm():
    b = np.array([1.0, 1e-17])
    a = np.array([1.0, 2e-17])  # 100% off, but 1e-17 of the tensor's scale
    assert compare("dW1", a, b, "torch").ok


@pytest.mark.parametrize(
    ("a", "problem"),
    [
        (np.zeros((2, 3)), "shape (2, 3) != (3, 2)"),
        (np.zeros((3, 2), dtype=np.float32), "dtype float32 != float64"),
    ],
)
def test_shape_then_dtype_are_checked_before_values(a, problem):
    c = compare("W1", a, np.zeros((3, 2)), "torch")
    assert not c.ok and c.problem == problem
    assert problem in c.describe()


def test_nan_on_one_side_fails_and_on_both_sides_passes():
    nan = np.array([np.nan, 1.0])
    assert not compare("A1", nan, np.array([0.5, 1.0]), "torch").ok
    assert compare("A1", nan, nan.copy(), "torch").ok


def test_updates_allow_the_rounding_of_the_new_parameter():
    # W_old = 1 and a true update of 1e-12: each engine's W_new is rounded to an ulp of 1
    # (2.2e-16), which is 2e-4 of the update itself — honest, and allowed by the ulps term.
    old = np.array([1.0])
    a = (old + 1e-12) - old
    b = (old + 1e-12 + 2.2e-16) - old
    assert not compare("ΔW1", a, b, "torch").ok
    assert compare("ΔW1", a, b, "torch", old_param=old).ok


def test_trace_comparison_reports_missing_and_extra_tensors():
    ours = {"Z1": np.ones(2), "loss": np.array(1.0)}
    assert [c.ok for c in compare_traces(ours, {"Z1": np.ones(2)}, "jax")] == [True, False]
    with pytest.raises(AssertionError, match="loss \\(scratch vs jax\\): missing from jax"):
        assert_traces_agree(ours, {"Z1": np.ones(2)}, "jax")
    extra = compare_traces(ours, {**ours, "dZ9": np.ones(1)}, "jax")
    assert extra[-1].problem == "in jax's trace but not in scratch's"
