"""Dropout in scratch: the masks, the forward and backward passes through them, evaluation
without them, and finite differences with the masks held fixed."""

from __future__ import annotations

import numpy as np
import pytest

from data.dropout import keep_masks
from scratch import MLP, forward_backward, forward_backward_per_example, init_params
from scratch.config import Optimizer, ScratchInputError
from scratch.gradcheck import numerical_gradients
from scratch.network import dropout_masks, forward
from scratch.optimizers import init_state
from scratch.trace_schema import trace_names
from scratch.training import train, train_step
from tests.scratch.cases import ACTIVATION_LOSS, exactly, targets


def dropped_problem(rng, hidden, loss, out, K, B, rate=0.4, sizes=(4, 6, 5)):
    mlp = MLP((*sizes, K), hidden, out, loss, dropout=rate)
    params = init_params(mlp, seed=3)
    # biases off zero: no pre-activation at a ReLU kink where a row's inputs are all dropped
    params = {p: v + 0.05 if p.startswith("b") else v for p, v in params.items()}
    X = rng.normal(size=(B, sizes[0]))
    masks = dropout_masks(mlp, B, seed=7, step=2)
    return mlp, params, X, targets(rng, loss, B, K), masks


def test_the_masks_follow_the_documented_algorithm_of_the_data_side():
    """scratch's draw and data/dropout.py's (written independently) give the same masks."""
    mlp = MLP((3, 7, 5, 2), dropout=0.3)
    for seed, step, batch, dtype in ((0, 0, 4, "float64"), (11, 9, 1, "float32")):
        ours = dropout_masks(mlp, batch, seed, step, dtype)
        theirs = keep_masks(seed, step, batch, (7, 5), 0.3, dtype)
        assert list(ours) == ["M1", "M2"] == list(theirs)
        for name in ours:
            assert ours[name].dtype == theirs[name].dtype == np.dtype(dtype)
            np.testing.assert_array_equal(ours[name], theirs[name])


def test_a_unit_whose_draw_equals_p_exactly_is_kept():
    """M = 1 where U >= p: with p set to the first draw of step 0's stream, that unit is
    kept (the boundary of the documented algorithm, which the data side follows too)."""
    p = float(np.random.default_rng([0, 0, 1]).random())
    masks = dropout_masks(MLP((2, 3, 1), dropout=p), 1, seed=0, step=0)
    assert masks["M1"][0, 0] == 1.0
    assert keep_masks(0, 0, 1, (3,), p, "float64")["M1"][0, 0] == 1.0


def test_masks_depend_on_seed_and_step_and_keep_units_with_probability_one_minus_p():
    mlp = MLP((3, 400, 300, 1), dropout=0.25)
    first = dropout_masks(mlp, 50, seed=0, step=0)
    assert set(np.unique(first["M1"])) == {0.0, 1.0}
    for other in (dropout_masks(mlp, 50, 0, 1), dropout_masks(mlp, 50, 1, 0)):
        assert not np.array_equal(first["M1"], other["M1"])
    # step 0's stream is not the batch schedule's (NumPy seeds [seed, 0] as [seed])
    schedule_draws = np.random.default_rng(0).random((50, 400))
    assert not np.array_equal(first["M1"], (schedule_draws >= 0.25).astype(float))
    kept = np.concatenate([m.ravel() for m in first.values()])  # 35,000 units
    sigma = np.sqrt(0.25 * 0.75 / kept.size)
    assert abs(kept.mean() - 0.75) < 5 * sigma


def test_inverted_dropout_keeps_the_expected_output_and_evaluation_runs_without_it(rng):
    """E[D] = A: the mean of D over many masks is A; without masks nothing is dropped."""
    mlp, params, X, _, _ = dropped_problem(rng, "sigmoid", "mse", "identity", 1, B=3)
    plain = forward(mlp, params, X)
    assert list(plain) == ["Z1", "A1", "Z2", "A2", "Z3", "A3"]
    draws = [forward(mlp, params, X, dropout_masks(mlp, 3, 0, k))["D1"] for k in range(4000)]
    sigma = plain["A1"] * np.sqrt(0.4 / 0.6) / np.sqrt(len(draws))  # sd of D's mean
    assert np.all(np.abs(np.mean(draws, axis=0) - plain["A1"]) < 5 * sigma)


def test_a_dropped_unit_passes_nothing_forward_and_no_error_back(rng):
    mlp, params, X, Y, masks = dropped_problem(rng, "tanh", "bce_logits", "identity", 1, B=6)
    trace = forward_backward(mlp, params, X, Y, masks)
    for l in (1, 2):
        M = masks[f"M{l}"]
        assert 0 < M.sum() < M.size
        np.testing.assert_array_equal(trace[f"D{l}"][M == 0], 0.0)
        np.testing.assert_allclose(trace[f"D{l}"][M == 1], trace[f"A{l}"][M == 1] / 0.6)
        np.testing.assert_array_equal(trace[f"dZ{l}"][M == 0], 0.0)
    np.testing.assert_array_equal(trace["M1"], masks["M1"])


@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
def test_per_example_loop_equals_the_vectorized_pass_with_dropout(rng, hidden, loss, out, K):
    mlp, params, X, Y, masks = dropped_problem(rng, hidden, loss, out, K, B=7)
    batch = forward_backward(mlp, params, X, Y, masks)
    literal = forward_backward_per_example(mlp, params, X, Y, masks)
    assert list(literal) == list(batch) == trace_names(3, "sgd", dropout=True)[: len(batch)]
    for name in batch:
        np.testing.assert_allclose(literal[name], batch[name], rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
def test_backprop_through_dropout_matches_finite_differences_with_the_masks_fixed(
    rng, hidden, loss, out, K
):
    mlp, params, X, Y, masks = dropped_problem(rng, hidden, loss, out, K, B=5)
    analytic = forward_backward(mlp, params, X, Y, masks)
    numeric = numerical_gradients(mlp, params, X, Y, masks=masks)
    for name, expected in numeric.items():
        scale = max(np.max(np.abs(expected)), 1e-8)
        np.testing.assert_allclose(
            analytic[name], expected, rtol=0, atol=1e-6 * scale, err_msg=name
        )


def test_finite_differences_see_the_masks():
    """Without the masks the same differences disagree with backprop through them: the
    check above can fail."""
    rng = np.random.default_rng(0)
    mlp, params, X, Y, masks = dropped_problem(rng, "tanh", "mse", "identity", 1, B=5)
    analytic = forward_backward(mlp, params, X, Y, masks)
    unmasked = numerical_gradients(mlp, params, X, Y)
    assert not np.allclose(analytic["dW1"], unmasked["dW1"], rtol=1e-3)


def test_a_step_of_a_network_with_dropout_needs_its_masks_of_the_right_shape(rng):
    mlp = MLP((2, 3, 1), dropout=0.5)
    params = init_params(mlp, 0)
    opt = Optimizer()
    X, Y = rng.normal(size=(4, 2)), np.ones((4, 1))
    state = init_state(opt, params)
    needs = "this network has dropout 0.5: a training step needs its masks (network.dropout_masks)"
    with pytest.raises(ScratchInputError, match=exactly(needs)):
        train_step(mlp, opt, params, state, X, Y)
    with pytest.raises(
        ScratchInputError, match=exactly("mask M1 has shape (4, 2), expected (4, 3)")
    ):
        train_step(mlp, opt, params, state, X, Y, masks={"M1": np.ones((4, 2))})
    plain = MLP((2, 3, 1))
    with pytest.raises(
        ScratchInputError, match=exactly("dropout masks given to a network without dropout")
    ):
        train_step(plain, opt, params, state, X, Y, masks={"M1": np.ones((4, 3))})


def test_the_training_loop_draws_each_steps_masks_from_the_seed(rng):
    mlp = MLP((2, 3, 1), dropout=0.5)
    params = init_params(mlp, 0)
    X, Y = rng.normal(size=(6, 2)), np.ones((6, 1))
    batches = [np.arange(3), np.arange(3, 6)]
    traces = list(train(mlp, Optimizer(), params, X, Y, batches, seed=4))
    for step, trace in enumerate(traces):
        np.testing.assert_array_equal(trace["M1"], dropout_masks(mlp, 3, 4, step)["M1"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dropout": 1.0}, "dropout must be a number in [0, 1) (0: none); got 1.0"),
        ({"dropout": -0.1}, "dropout must be a number in [0, 1) (0: none); got -0.1"),
        ({"dropout": True}, "dropout must be a number in [0, 1) (0: none); got True"),
        ({"dropout": False}, "dropout must be a number in [0, 1) (0: none); got False"),
        ({"dropout": "0.5"}, "dropout must be a number in [0, 1) (0: none); got '0.5'"),
        (
            {"sizes": (3, 1), "dropout": 0.5},
            "dropout acts on hidden layers, and this network has none: add a hidden layer "
            "or set dropout = 0",
        ),
    ],
)
def test_bad_dropout_is_refused(kwargs, message):
    with pytest.raises(ScratchInputError, match=exactly(message)):
        MLP(**{"sizes": (3, 2, 1), **kwargs})
