"""The comparison helper: passes what it should, names what it fails, and never lets a NaN or
an infinity count as agreement."""

from __future__ import annotations

import numpy as np
import pytest

from comparisons.oracle.chunk_compare import RowMemory, compare_rows
from comparisons.oracle.compare import (
    FlatMemory,
    FlatTrace,
    assert_traces_agree,
    compare,
    compare_trace_flat,
    compare_traces,
)
from comparisons.oracle.tolerances import EXACT, FALLBACK, ROUNDOFF, table_as_dict


def test_every_number_of_the_tolerance_tables_has_a_reason():
    for dtype, table in table_as_dict().items():
        assert table["roundoff"]["reason"] and table["fallback"]["reason"], dtype
        assert all(table["exact"].values())
    assert ROUNDOFF["float64"].unit == np.finfo(np.float64).eps / 2
    assert ROUNDOFF["float32"].unit == np.finfo(np.float32).eps / 2
    assert set(EXACT) == {"batch", "input", "counter", "dropout_mask"}
    assert FALLBACK["float64"].rtol <= 1e-9


def test_identical_tensors_agree(rng):
    a = rng.normal(size=(4, 3))
    c = compare("dW1", a, a.copy(), "torch", allowed=0.0)
    assert c.ok and c.max_abs == 0 and c.ratio == 0


def test_an_elementwise_allowance_is_applied_element_by_element():
    b = np.array([1.0, 1.0])
    a = np.array([1.0 + 1e-12, 1.0 + 1e-12])
    assert compare("Z1", a, b, "torch", allowed=np.array([2e-12, 2e-12])).ok
    c = compare("Z1", a, b, "torch", allowed=np.array([2e-12, 5e-13]))
    assert not c.ok and c.index == (1,)


def test_the_failure_names_the_worst_element_both_values_and_the_allowance():
    b = np.zeros((3, 4)) + 1.0
    a = b.copy()
    a[2, 1] = 1.5
    c = compare("dZ2", a, b, "jax", allowed=1e-9)
    assert not c.ok and c.index == (2, 1)
    text = c.describe("step 7 (epoch 0, batch 7)")
    assert text.startswith("step 7 (epoch 0, batch 7): dZ2[2, 1] scratch=1.5 jax=1 ")
    assert "|diff|=0.5" in text and "allowed=1e-09" in text


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


@pytest.mark.parametrize(
    ("a", "b", "nonfinite"),
    [
        ([np.nan, 1.0], [0.5, 1.0], "differs"),  # one side finite
        ([np.inf, 1.0], [np.nan, 1.0], "both"),  # inf against NaN: an overflow, either way
        ([-np.inf, 1.0], [np.inf, 1.0], "both"),  # infinities of either sign: diverged
        ([np.nan, 1.0], [1.0, np.nan], "differs"),  # NaN in different places
        ([np.nan, 1.0], [np.nan, 1.0], "both"),  # the same NaN: still not agreement
        ([np.inf, 1.0], [np.inf, 1.0], "both"),  # the same infinity: still not agreement
        ([np.nan, 1.0], [np.nan, 2.0], "differs"),  # the same NaN, but the rest differs
    ],
)
def test_no_nan_or_infinity_ever_counts_as_agreement(a, b, nonfinite):
    c = compare("A1", np.array(a), np.array(b), "torch", allowed=1e-9)
    assert not c.ok and c.nonfinite == nonfinite
    assert c.problem


def test_a_non_finite_allowance_allows_nothing():
    a, b = np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9])
    assert not compare("Z1", a, b, "torch", allowed=np.array([np.inf, np.nan])).ok


def test_without_an_allowance_the_batch_is_exact_and_the_rest_takes_the_fallback_table():
    assert not compare("rows", np.array([1, 2]), np.array([1, 3]), "schedule").ok
    b = np.array([3.0, 4.0])
    assert compare("Z1", b * (1 + 0.5 * FALLBACK["float64"].rtol), b, "torch").ok
    assert not compare("Z1", b * (1 + 3 * FALLBACK["float64"].rtol), b, "torch").ok


def test_trace_comparison_reports_missing_and_extra_tensors():
    ours = {"Z1": np.ones(2), "loss": np.array(1.0)}
    assert [c.ok for c in compare_traces(ours, {"Z1": np.ones(2)}, "jax")] == [True, False]
    with pytest.raises(AssertionError, match="loss \\(scratch vs jax\\): missing from jax"):
        assert_traces_agree(ours, {"Z1": np.ones(2)}, "jax")
    extra = compare_traces(ours, {**ours, "dZ9": np.ones(1)}, "jax")
    assert extra[-1].problem == "in jax's trace but not in scratch's"


def test_finite_differences_leave_out_the_rows_at_a_relu_kink():
    """A row whose inputs to a ReLU layer are all zero (every unit before it dropped) has its
    pre-activation at the bias, 0 at the start: a central difference straddles the kink
    there and averages both slopes, so the row is not judged; the other rows are."""
    from comparisons.oracle.gradcheck import judged_rows
    from scratch import MLP, init_params

    mlp = MLP((3, 4, 1), hidden="relu", output="identity", loss="mse")
    params = init_params(mlp, 0)
    X = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, -0.5]])
    np.testing.assert_array_equal(judged_rows(mlp, params, X), [True, False, True])
    tanh = MLP((3, 4, 1), hidden="tanh", output="identity", loss="mse")
    assert judged_rows(tanh, params, X).all()  # smooth: every row judged


def test_finite_differences_with_batch_norm_judge_the_rows_they_differentiate():
    """With batch normalization the rows gradcheck keeps are a batch with statistics of its
    own, where a row clear of a kink in the whole batch can sit on one: check's covering set
    met it (ReLU, dropout and batch norm, a leaky ReLU output). gradcheck agrees there."""
    from comparisons.modes.gradcheck import run_gradcheck
    from comparisons.run.coverage import Case
    from comparisons.run.inputs import build_inputs

    changes = {
        "activation": "relu", "output": "leaky_relu", "loss": "mse", "optimizer": "momentum",
        "lr": 0.02, "momentum": 0.9, "drop_last": True, "lr_schedule": "cosine",
        "lr_warmup": 2, "lr_min": 0.001, "dropout": 0.3, "batch_norm": True,
    }  # fmt: skip
    report = run_gradcheck(build_inputs(Case("bn-kink", changes).spec(())), 2)
    assert report["verdict"] == "agree", report["first_divergence"]


# The fast flat comparison (``compare_trace_flat``, the executors' path) against the helper
# itself, tensor by tensor: the same worst ratio, max |a - b| and relative error to the bit,
# and the same failures, whatever the dtypes, layouts, allowances and non-finite values.
FLAT_SHAPES = {"Z1": (6, 4), "A1": (6, 4), "dW1": (3, 4), "db1": (4,), "loss": (), "t": ()}


def _flat_case(rng, dtype, reference_dtype=None):
    trace, reference, allowed = {}, {}, {}
    for name, shape in FLAT_SHAPES.items():
        if name == "t":
            trace[name] = reference[name] = np.asarray(3, dtype=np.int64)
            allowed[name] = np.zeros(())
            continue
        a = (rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
        noise = rng.normal(size=shape) * np.abs(a) * 10.0 ** rng.integers(-9, -1)
        b = (a + noise).astype(reference_dtype or dtype)
        if rng.random() < 0.3 and b.size:  # a non-finite value, in one engine or both
            b.reshape(-1)[rng.integers(b.size)] = rng.choice([np.nan, np.inf, -np.inf])
            if rng.random() < 0.5:
                a = a.copy()
                a.reshape(-1)[rng.integers(a.size)] = np.nan
        if name == "dW1" and rng.random() < 0.5:  # a transposed view, as torch's trace gives
            b = np.ascontiguousarray(b.T).T
        trace[name], reference[name] = a, b
        scale = np.abs(a.astype(np.float64)) * 10.0 ** rng.integers(-9, -1)
        allowed[name] = scale if rng.random() < 0.8 else np.asarray(scale.max(initial=0.0))
    return trace, reference, allowed


MEMORY = FlatMemory()  # shared by every case below, as a run's steps share it


@pytest.mark.parametrize("seed", range(40))
def test_the_flat_comparison_is_the_helpers_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    dtype = [np.float64, np.float32][seed % 2]
    trace, first, allowed = _flat_case(rng, dtype)
    _, second, _ = _flat_case(np.random.default_rng(seed + 1000), dtype)
    if seed % 3 == 0:  # another trace laid out in the same memory just before
        FlatTrace(*_flat_case(np.random.default_rng(seed + 2000), dtype)[::2], memory=MEMORY)
    ours = FlatTrace(trace, allowed, memory=MEMORY if seed % 4 else None)
    for engine, reference in (("torch", first), ("jax", second), ("torch", first)):
        got = compare_trace_flat(ours, reference, engine)  # (the same buffers, every time)
        expected = compare_traces(trace, reference, engine, allowed)
        assert got.names == [c.tensor for c in expected]
        for field in ("ratio", "max_abs", "max_rel"):
            want = np.array([getattr(c, field) for c in expected])
            np.testing.assert_array_equal(getattr(got, field), want, err_msg=field)
        assert [c.describe() for c in got.failed] == [c.describe() for c in expected if not c.ok]


ROWS = RowMemory()  # shared by every chunk below, as a run's chunks share it


def _chunk_case(rng, dtype):
    """A step as a chunk holds it: every allowance shaped as its tensor (roundoff's are)."""
    trace, reference, allowed = _flat_case(rng, dtype)
    shaped = {n: np.broadcast_to(a, np.shape(trace[n])).copy() for n, a in allowed.items()}
    return trace, reference, shaped


@pytest.mark.parametrize("seed", range(12))
def test_a_chunks_rows_are_each_steps_flat_comparison_to_the_bit(seed):
    """``compare_rows`` (the chunked executor's path): a step whose every tensor passes gets
    the flat comparison's figures exactly, any other None; chunks of several lengths in one
    memory."""
    rng = np.random.default_rng(seed)
    dtype = [np.float64, np.float32][seed % 2]
    steps = [_chunk_case(rng, dtype) for _ in range(int(rng.integers(2, 7)))]
    for trace, reference, allowed in steps:  # finite, so that most steps pass
        for part in (trace, reference):
            for n, v in part.items():
                part[n] = np.nan_to_num(v, nan=1.0, posinf=1.0, neginf=-1.0)
        if rng.random() < 0.7:  # well within the allowance
            allowed.update({n: np.abs(np.asarray(v, np.float64)) for n, v in trace.items()})
    names = list(FLAT_SHAPES)
    ours, allowed = [s[0] for s in steps], [s[2] for s in steps]
    theirs = {"torch": [s[1] for s in steps]}
    rows = compare_rows(ours, allowed, theirs, names, ROWS)["torch"]
    for (trace, reference, allowances), row in zip(steps, rows, strict=True):
        flat = compare_trace_flat(FlatTrace(trace, allowances), reference, "torch")
        if flat.failed:
            assert row is None
            continue
        for field in ("ratio", "max_abs", "max_rel"):
            np.testing.assert_array_equal(getattr(row, field), getattr(flat, field), field)


def test_a_chunk_that_does_not_stack_is_left_to_each_step():
    rng = np.random.default_rng(7)
    steps = [_chunk_case(rng, np.float64) for _ in range(3)]
    ours, allowed = [s[0] for s in steps], [s[2] for s in steps]
    names = list(FLAT_SHAPES)
    other = [dict(s[1]) for s in steps]
    other[1]["Z1"] = other[1]["Z1"].astype(np.float32)  # a dtype unlike ours
    misshapen = [dict(s[1]) for s in steps]
    misshapen[2]["dW1"] = misshapen[2]["dW1"].T
    theirs = {"torch": [s[1] for s in steps], "jax": other, "old": misshapen}
    assert set(compare_rows(ours, allowed, theirs, names, ROWS)) == {"torch"}
    ours[1] = {**ours[1], "A1": ours[1]["A1"][:3]}  # the engine's own shapes differ
    assert compare_rows(ours, allowed, theirs, names, ROWS) == {}
