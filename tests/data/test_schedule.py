"""The seeded batch schedule: determinism, coverage, partial batches, digest, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data import DataError, make_schedule


def batch_sizes(schedule, epoch: int) -> list[int]:
    return [len(s.rows) for s in schedule if s.epoch == epoch]


def test_same_arguments_give_the_same_schedule():
    a, b = make_schedule(100, 16, 3, seed=7), make_schedule(100, 16, 3, seed=7)
    assert a.sha256 == b.sha256
    assert all(np.array_equal(x.rows, y.rows) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "change",
    [{"seed": 8}, {"epochs": 4}, {"batch_size": 15}, {"shuffle": False}, {"drop_last": True}],
    ids=lambda c: next(iter(c)),
)
def test_any_changed_argument_changes_the_digest(change):
    base = {"n_rows": 100, "batch_size": 16, "epochs": 3, "seed": 7}
    assert make_schedule(**base).sha256 != make_schedule(**{**base, **change}).sha256


def test_partial_last_batch_is_kept():
    schedule = make_schedule(10, 4, epochs=2, seed=0)
    assert [batch_sizes(schedule, e) for e in (0, 1)] == [[4, 4, 2], [4, 4, 2]]
    assert len(schedule) == 6 and schedule.steps_per_epoch == 3


def test_drop_last_drops_the_partial_batch():
    schedule = make_schedule(10, 4, epochs=2, seed=0, drop_last=True)
    assert batch_sizes(schedule, 0) == [4, 4] and len(schedule) == 4


def test_steps_are_numbered_globally_and_within_epochs():
    schedule = make_schedule(10, 4, epochs=2, seed=0)
    assert [(s.index, s.epoch, s.batch) for s in schedule] == [
        (0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 1, 0), (4, 1, 1), (5, 1, 2),
    ]  # fmt: skip


def test_without_shuffle_rows_come_in_order():
    schedule = make_schedule(10, 4, epochs=2, seed=0, shuffle=False)
    for epoch in (0, 1):
        rows = np.concatenate([s.rows for s in schedule if s.epoch == epoch])
        np.testing.assert_array_equal(rows, np.arange(10))


def test_epochs_are_shuffled_differently():
    schedule = make_schedule(50, 50, epochs=2, seed=0)
    assert not np.array_equal(schedule.steps[0].rows, schedule.steps[1].rows)


def test_rows_are_read_only_int64():
    rows = make_schedule(10, 4, epochs=1, seed=0).steps[0].rows
    assert rows.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        rows[0] = 0


def test_documented_algorithm_reproduces_rows_and_digest():
    """Re-implements the module docstring and the sha256 docstring independently."""
    n, bs, epochs, seed = 10, 4, 2, 3
    rng = np.random.default_rng(seed)
    digest = hashlib.sha256(b"backprop-oracle batch schedule v1\n")
    for key, value in [("n_rows", n), ("batch_size", bs), ("epochs", epochs), ("seed", seed),
                       ("shuffle", True), ("drop_last", False)]:  # fmt: skip
        digest.update(f"{key}={value}\n".encode())
    expected = []
    for epoch in range(epochs):
        order = rng.permutation(n)
        for batch, start in enumerate(range(0, n, bs)):
            rows = order[start : start + bs]
            expected.append(rows)
            digest.update(np.array([epoch, batch, len(rows)], dtype="<i8").tobytes())
            digest.update(rows.astype("<i8").tobytes())

    schedule = make_schedule(n, bs, epochs, seed)
    for step, rows in zip(schedule, expected, strict=True):
        np.testing.assert_array_equal(step.rows, rows)
    assert schedule.sha256 == digest.hexdigest()


def test_as_dict_reports_parameters_and_digest():
    schedule = make_schedule(10, 4, epochs=2, seed=1)
    assert schedule.as_dict() == {
        "n_rows": 10, "batch_size": 4, "epochs": 2, "seed": 1, "shuffle": True,
        "drop_last": False, "steps": 6, "steps_per_epoch": 3, "sha256": schedule.sha256,
    }  # fmt: skip


@settings(max_examples=60, deadline=None, database=None)
@given(
    n_rows=st.integers(1, 300),
    batch_size=st.integers(1, 64),
    epochs=st.integers(1, 3),
    seed=st.integers(0, 2**32),
    drop_last=st.booleans(),
)
def test_every_epoch_covers_each_row_once(n_rows, batch_size, epochs, seed, drop_last):
    drop_last = drop_last and batch_size <= n_rows
    schedule = make_schedule(n_rows, batch_size, epochs, seed, drop_last=drop_last)
    for epoch in range(epochs):
        rows = np.concatenate([s.rows for s in schedule if s.epoch == epoch])
        if drop_last:
            assert len(rows) == n_rows - n_rows % batch_size
            assert len(np.unique(rows)) == len(rows)
        else:
            np.testing.assert_array_equal(np.sort(rows), np.arange(n_rows))
        assert all(1 <= len(s.rows) <= batch_size for s in schedule)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n_rows": 0}, "n_rows must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 2.0}, "batch_size must be an integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"seed": True}, "seed must be a non-negative integer"),
        ({"batch_size": 11, "drop_last": True}, "leaves no steps"),
    ],
    ids=lambda v: "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else "",
)
def test_bad_arguments_are_data_errors(kwargs, words):
    args = {"n_rows": 10, "batch_size": 4, "epochs": 1, "seed": 0, **kwargs}
    with pytest.raises(DataError, match=words):
        make_schedule(**args)
