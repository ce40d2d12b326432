"""The synthetic classification problem: deterministic, well-shaped, not linearly separable."""

from __future__ import annotations

import numpy as np
import pytest

from data import DataError, make_synthetic


def test_same_seed_same_data_other_seed_other_data():
    X1, Y1 = make_synthetic(seed=3)
    X2, Y2 = make_synthetic(seed=3)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    assert not np.array_equal(make_synthetic(seed=4)[0], X1)


def test_binary_shapes_and_both_classes_present():
    X, Y = make_synthetic(n_rows=200, n_features=5)
    assert X.shape == (200, 5) and X.dtype == np.float64
    assert Y.shape == (200, 1) and Y.dtype == np.float64
    assert set(np.unique(Y)) == {0.0, 1.0}
    assert 60 <= Y.sum() <= 140  # roughly balanced


def test_multiclass_targets_are_one_hot_with_every_class():
    X, Y = make_synthetic(n_rows=300, n_features=4, n_classes=3, seed=1)
    assert X.shape == (300, 4) and Y.shape == (300, 3)
    np.testing.assert_array_equal(Y.sum(axis=1), 1.0)
    assert (Y.sum(axis=0) > 50).all()


def test_a_linear_model_cannot_fit_it():
    X, Y = make_synthetic(n_rows=1000, noise=0.0)
    A = np.c_[X, np.ones(len(X))]  # (n, n_features + 1)
    w = np.linalg.lstsq(A, Y, rcond=None)[0]  # least-squares linear classifier
    accuracy = ((A @ w > 0.5) == (Y > 0.5)).mean()
    assert accuracy < 0.85


@pytest.mark.parametrize(
    "kwargs",
    [{"n_rows": 0}, {"n_features": 1}, {"n_classes": 1}, {"seed": -1}, {"noise": -0.1}],
    ids=lambda c: next(iter(c)),
)
def test_bad_arguments_are_data_errors(kwargs):
    with pytest.raises(DataError):
        make_synthetic(**kwargs)
