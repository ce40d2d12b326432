"""Initial weights: seeded, drawn from the stated distribution, the same in float32."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch import MLP, ScratchInputError, init_params
from tests.scratch.cases import MLP_421, exactly

SCHEMES = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_initializers_are_seeded_and_scaled(scheme):
    mlp = MLP((400, 300, 1))
    a, b = init_params(mlp, 7, scheme), init_params(mlp, 7, scheme)
    assert all(np.array_equal(a[p], b[p]) for p in a)
    fan = 700 if scheme.startswith("glorot") else 400
    assert np.std(a["W1"]) == pytest.approx(np.sqrt(2 / fan), rel=0.02)
    assert not np.array_equal(a["W1"], init_params(mlp, 8, scheme)["W1"])
    assert np.all(a["b1"] == 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_initializers_draw_from_the_stated_distribution(scheme):
    """U(-a, a) stays inside ±a and reaches near it; N(0, σ²) with the same σ = a/√3 does
    not stay inside (P(|x| > √3·σ) ≈ 8%); both are centred on 0."""
    W = init_params(MLP((400, 300, 1)), 7, scheme)["W1"]  # 120,000 draws
    fan = 700 if scheme.startswith("glorot") else 400
    a = math.sqrt(6 / fan)
    sigma = math.sqrt(2 / fan)
    assert abs(np.mean(W)) < 0.02 * sigma  # the standard error of the mean is 0.003·σ
    if scheme.endswith("uniform"):
        assert np.max(np.abs(W)) <= a
        assert np.max(np.abs(W)) > 0.999 * a
    else:
        assert np.mean(np.abs(W) > a) == pytest.approx(0.083, abs=0.01)


def test_float32_parameters_are_the_float64_ones_rounded():
    p64, p32 = init_params(MLP_421, 1), init_params(MLP_421, 1, dtype="float32")
    assert p32["W1"].dtype == np.float32
    np.testing.assert_array_equal(p32["W1"], p64["W1"].astype(np.float32))


def test_unknown_initializer_lists_the_known_ones():
    message = (
        "unknown initializer 'lecun'; choose one of "
        "glorot_uniform, glorot_normal, he_normal, he_uniform"
    )
    with pytest.raises(ScratchInputError, match=exactly(message)):
        init_params(MLP_421, 0, "lecun")


def test_the_defaults_are_glorot_uniform_float64_with_gain_1():
    mlp = MLP((5, 4, 2))
    default, spelled = init_params(mlp, 3), init_params(mlp, 3, "glorot_uniform", "float64", 1.0)
    assert list(default) == list(spelled)
    assert all(np.array_equal(default[p], spelled[p]) for p in default)
    assert {v.dtype for v in default.values()} == {np.dtype("float64")}


def test_a_batch_normalized_network_starts_with_gamma_1_and_beta_0_in_the_runs_dtype():
    params = init_params(MLP((5, 4, 2), batch_norm=True), 3, dtype="float32")
    assert {p: (v.dtype, v.shape) for p, v in params.items()} == {
        "W1": (np.float32, (5, 4)),
        "gamma1": (np.float32, (4,)),
        "beta1": (np.float32, (4,)),
        "W2": (np.float32, (4, 2)),
        "b2": (np.float32, (2,)),
    }
    assert params["gamma1"].tolist() == [1.0] * 4 and params["beta1"].tolist() == [0.0] * 4
