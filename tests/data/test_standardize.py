"""Standardization: fitted on train only, constant columns, target shape."""

from __future__ import annotations

import numpy as np
import pytest

from data import DataError, Standardizer, standardize_splits, standardized_occupancy


def test_fitted_data_has_zero_mean_unit_std(rng):
    X = rng.normal(5.0, 3.0, size=(500, 4))
    Z = Standardizer.fit(X).transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z.std(axis=0), 1.0, rtol=1e-12)


def test_constant_column_maps_to_zeros(rng):
    X = np.c_[rng.normal(size=50), np.full(50, 0.1)]
    standardizer = Standardizer.fit(X)
    assert standardizer.std[1] == 1.0
    np.testing.assert_allclose(standardizer.transform(X)[:, 1], 0.0, atol=1e-15)


def test_wrong_column_count_is_a_data_error(rng):
    standardizer = Standardizer.fit(rng.normal(size=(10, 3)))
    with pytest.raises(DataError, match="4 columns but the standardizer was fitted on 3"):
        standardizer.transform(rng.normal(size=(10, 4)))


@pytest.mark.parametrize(
    "X", [np.zeros((0, 3)), np.zeros(3), np.array([[1.0, np.nan]])], ids=["empty", "1d", "nan"]
)
def test_unusable_input_is_a_data_error(X):
    with pytest.raises(DataError):
        Standardizer.fit(X)


def test_splits_use_training_statistics_and_column_targets(rng):
    train = (rng.normal(2.0, 1.0, size=(40, 3)), rng.integers(0, 2, size=40))
    test = (rng.normal(9.0, 4.0, size=(20, 3)), rng.integers(0, 2, size=20))
    standardizer, out = standardize_splits({"train": train, "test": test})

    expected = (test[0] - train[0].mean(axis=0)) / train[0].std(axis=0)
    np.testing.assert_allclose(out["test"][0], expected, rtol=1e-14)
    assert out["test"][1].shape == (20, 1) and out["test"][1].dtype == np.float64
    np.testing.assert_allclose(standardizer.mean, train[0].mean(axis=0))


def test_missing_fit_split_is_a_data_error(rng):
    with pytest.raises(DataError, match="no split 'train'"):
        standardize_splits({"test": (rng.normal(size=(4, 2)), np.zeros(4))})


@pytest.mark.realdata
def test_occupancy_is_standardized_on_train(occupancy_dir):
    standardizer, out = standardized_occupancy(occupancy_dir)
    X, _ = out["train"]
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(X.std(axis=0), 1.0, rtol=1e-10)
    assert {name: Y.shape for name, (_, Y) in out.items()} == {
        "train": (8143, 1),
        "test": (2665, 1),
        "test2": (9752, 1),
    }
    assert not np.allclose(out["test"][0].mean(axis=0), 0.0, atol=1e-3)  # not refitted
    assert len(standardizer.as_dict()["mean"]) == 5
