"""The configuration records and the input checks of scratch/config.py: a bad network, bad
hyperparameters, bad parameters or a bad batch are refused with a message that says what
is wrong. The batch and parameter checks are reached through ``train_step``, as a user
reaches them."""

from __future__ import annotations

import numpy as np
import pytest

from scratch import MLP, Optimizer, ScratchInputError, init_params, train_step
from tests.scratch.cases import MLP_421, exactly

# --- the network: MLP --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (4,)}, "at least two positive integer widths"),
        ({"sizes": (4, 0, 1)}, "at least two positive integer widths"),
        ({"sizes": (4, 1), "hidden": "swish"}, "unknown activation 'swish'"),
        ({"sizes": (4, 1), "loss": "hinge"}, "unknown loss 'hinge'"),
        ({"sizes": (4, 1), "loss": "bce", "output": "identity"}, "expects output activation"),
        ({"sizes": (4, 1), "loss": "softmax_cross_entropy"}, "at least 2 outputs"),
    ],
)
def test_bad_networks_are_refused(kwargs, message):
    with pytest.raises(ScratchInputError, match=message):
        MLP(**kwargs)


def test_mlp_sizes_given_as_a_list_become_a_tuple():
    mlp = MLP([4, 3, 1])
    assert mlp.sizes == (4, 3, 1) and isinstance(mlp.sizes, tuple)
    assert mlp == MLP((4, 3, 1)) and hash(mlp) == hash(MLP((4, 3, 1)))


@pytest.mark.parametrize("bad", [True, 2.5, "3"], ids=["bool", "float", "str"])
def test_mlp_refuses_widths_that_are_not_integers(bad):
    with pytest.raises(ScratchInputError, match="at least two positive integer widths"):
        MLP((4, bad, 1))


def test_mlp_accepts_numpy_integer_widths():
    assert MLP((np.int64(4), np.int32(3), 1)).n_layers == 2


def test_softmax_cross_entropy_needs_two_outputs_in_the_last_layer():
    # n_L = 2 is enough; a narrow hidden layer does not matter; a single output is refused.
    assert MLP((4, 2), loss="softmax_cross_entropy").sizes[-1] == 2
    assert MLP((4, 1, 3), loss="softmax_cross_entropy").sizes[-1] == 3
    message = "softmax_cross_entropy needs at least 2 outputs (n_L >= 2)"
    with pytest.raises(ScratchInputError, match=exactly(message)):
        MLP((4, 5, 1), loss="softmax_cross_entropy")


# --- the optimizer: Optimizer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "adagrad"}, "unknown optimizer 'adagrad'"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"name": "adamw", "l2": 0.1}, "adamw takes decoupled weight_decay"),
        ({"name": "sgd", "weight_decay": 0.1}, "use l2 for L2 regularization"),
        ({"clip_norm": -1.0}, r"clip_norm must be >= 0 \(0: no clipping\); got -1.0"),
        ({"clip_norm": float("inf")}, "clip_norm must be a finite number"),
        ({"clip_norm": "1"}, "clip_norm must be a number"),
    ],
)
def test_bad_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Optimizer(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": 0.0},
        {"eps": -1e-8},
        {"l2": -0.1},
        {"name": "adamw", "weight_decay": -0.1},
    ],
    ids=["eps-zero", "eps-negative", "l2-negative", "weight-decay-negative"],
)
def test_non_positive_eps_and_negative_l2_or_decay_are_refused(kwargs):
    with pytest.raises(ValueError, match=exactly("eps must be > 0, and l2 and weight_decay >= 0")):
        Optimizer(**kwargs)


def test_adamw_refuses_l2_with_the_full_message():
    message = "adamw takes decoupled weight_decay, not l2; set l2 = 0"
    with pytest.raises(ValueError, match=exactly(message)):
        Optimizer("adamw", l2=0.1)


def test_unknown_optimizer_message_lists_every_optimizer_in_full():
    message = "unknown optimizer 'adagrad'; choose one of sgd, momentum, nesterov, adam, adamw, "
    message += "rmsprop"
    with pytest.raises(ValueError, match=exactly(message)):
        Optimizer("adagrad")


# --- a training step's inputs: check_inputs ----------------------------------------------


def step(params, X=None, Y=None):
    X = np.ones((3, 4)) if X is None else X
    Y = np.ones((3, 1)) if Y is None else Y
    return train_step(MLP_421, Optimizer("sgd"), params, {"t": 0}, X, Y)


def test_missing_parameters_are_refused_naming_the_expected_ones():
    params = init_params(MLP_421, 0)
    del params["b3"]
    message = (
        "parameters must be ['W1', 'b1', 'W2', 'b2', 'W3', 'b3']; "
        "got ['W1', 'W2', 'W3', 'b1', 'b2']"
    )
    with pytest.raises(ScratchInputError, match=exactly(message)):
        step(params)


def test_wrong_parameter_shapes_are_refused():
    params = init_params(MLP_421, 0)
    params["W2"] = params["W2"].T
    with pytest.raises(ScratchInputError, match=r"W2 has shape \(2, 3\), expected \(3, 2\)"):
        train_step(MLP_421, Optimizer(), params, {"t": 0}, np.ones((2, 4)), np.ones((2, 1)))


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("W1", (3, 4), "W1 has shape (3, 4), expected (4, 3) for sizes (4, 3, 2, 1)"),
        # b1 of shape (1,) would broadcast silently: only the check stops it.
        ("b1", (1,), "b1 has shape (1,), expected (3,) for sizes (4, 3, 2, 1)"),
    ],
)
def test_first_layer_parameters_of_the_wrong_shape_are_refused(name, shape, message):
    params = init_params(MLP_421, 0)
    params[name] = np.zeros(shape)
    with pytest.raises(ScratchInputError, match=exactly(message)):
        step(params)


@pytest.mark.parametrize(
    ("X", "Y", "message"),
    [
        (np.ones((3, 5)), np.ones((3, 1)), r"X must be \(B, 4\)"),
        (np.ones((0, 4)), np.ones((0, 1)), "empty batch"),
        (np.ones((3, 4)), np.ones((3, 2)), r"Y must be \(B, n_L\)"),
        (
            np.array([[1, 2, np.nan, 4.0]]),
            np.ones((1, 1)),
            r"X holds a non-finite value at index \(0, 2\)",
        ),
        (np.ones((1, 4)), np.array([[np.inf]]), "Y holds a non-finite value"),
    ],
    ids=["wrong-width", "empty", "wrong-target", "nan-input", "inf-target"],
)
def test_bad_batches_are_refused(X, Y, message):
    opt = Optimizer("sgd")
    params = init_params(MLP_421, 0)
    with pytest.raises(ScratchInputError, match=message):
        train_step(MLP_421, opt, params, {"t": 0}, X, Y)


@pytest.mark.parametrize(
    ("X", "Y", "message"),
    [
        (np.ones((0, 4)), np.ones((0, 1)), "empty batch: X has 0 rows"),
        (np.ones((3, 4)), np.ones((3, 2)), "Y must be (B, n_L) = (3, 1); got shape (3, 2)"),
        (
            np.array([[1, 2, np.nan, 4.0]]),
            np.ones((1, 1)),
            "X holds a non-finite value at index (0, 2): nan",
        ),
        (
            np.ones((1, 4)),
            np.array([[-np.inf]]),
            "Y holds a non-finite value at index (0, 0): -inf",
        ),
    ],
    ids=["empty", "wrong-target", "nan-input", "inf-target"],
)
def test_bad_batches_are_refused_with_the_full_message(X, Y, message):
    with pytest.raises(ScratchInputError, match=exactly(message)):
        step(init_params(MLP_421, 0), X, Y)
