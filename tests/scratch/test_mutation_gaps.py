"""Tests that close the gaps a mutation run over scratch/ found (see docs/mutation.md).

Each test names the behaviour it pins; the expected values are worked out by hand in the
comments or computed independently with the standard library, never taken from scratch.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from scratch import (
    MLP,
    NonFiniteLossError,
    Optimizer,
    ScratchInputError,
    forward_backward,
    forward_backward_per_example,
    init_params,
    numerical_gradients,
    train,
    train_step,
)
from scratch.activations import ACTIVATIONS, get_activation
from scratch.losses import get_loss, softmax, softmax_cross_entropy
from scratch.optimizers import init_state, update
from scratch.training import accuracy_of, classify, epoch_batches

MLP_421 = MLP((4, 3, 2, 1), hidden="tanh", output="identity", loss="bce_logits")


def exactly(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern that accepts this message and nothing else."""
    return f"^{re.escape(message)}$"


# --- the mini-batches of an epoch -------------------------------------------------------


def as_lists(batches: list[np.ndarray]) -> list[list[int]]:
    return [b.tolist() for b in batches]


def test_epoch_batches_keep_the_partial_last_batch_by_default():
    # 12 rows in batches of 5: rows 0-4, 5-9, and the 2 left over, 10-11.
    expected = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert as_lists(epoch_batches(np.arange(12), 5)) == expected
    assert as_lists(epoch_batches(np.arange(12), 5, drop_last=False)) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (12, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),  # 2 rows left over: dropped
        (10, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),  # nothing left over: nothing dropped
        (9, [[0, 1, 2, 3, 4]]),  # 4 rows left over, one short of a batch: dropped
        (4, []),  # not even one full batch
    ],
)
def test_epoch_batches_with_drop_last_keep_full_batches_only(n, expected):
    order = np.arange(n)[::-1].copy()  # a shuffled order: the batches follow it, not the index
    assert as_lists(epoch_batches(order, 5, drop_last=True)) == [
        [int(order[i]) for i in batch] for batch in expected
    ]


# --- predicted classes and accuracy -----------------------------------------------------


def test_classify_takes_the_argmax_of_several_outputs():
    # Two outputs (the smallest multi-output head) and three: each row's largest column.
    for loss, A_L, expected in [
        ("mse", [[0.2, 0.8], [0.9, 0.1], [0.6, 0.7]], [1, 0, 1]),
        ("softmax_cross_entropy", [[0.0, 2.0, 1.0], [5.0, -1.0, 4.0]], [1, 0]),
    ]:
        A_L = np.array(A_L)
        mlp = MLP((3, A_L.shape[1]), output="identity", loss=loss)
        np.testing.assert_array_equal(classify(mlp, A_L), expected)


@pytest.mark.parametrize(
    ("output", "loss", "A_L", "expected"),
    [
        # Logits: class 1 past 0 (σ(0) = 1/2), whatever the size of the logit.
        ("identity", "bce_logits", [-2.0, -0.1, 0.0, 0.3, 0.7, 5.0], [0, 0, 0, 1, 1, 1]),
        # Probabilities or regression outputs of a 0/1 target: class 1 past 0.5.
        ("sigmoid", "bce", [0.01, 0.3, 0.5, 0.51, 0.7, 0.99], [0, 0, 0, 1, 1, 1]),
        ("identity", "mse", [-1.0, 0.3, 0.5, 0.7, 1.2, 2.0], [0, 0, 0, 1, 1, 1]),
    ],
    ids=["logits", "probabilities", "mse"],
)
def test_classify_thresholds_one_output_strictly(output, loss, A_L, expected):
    mlp = MLP((3, 1), output=output, loss=loss)
    predicted = classify(mlp, np.array(A_L)[:, None])
    assert predicted.dtype.kind == "i"  # classes are integers, as the docstring says
    np.testing.assert_array_equal(predicted, expected)


def test_accuracy_of_one_hot_targets_compares_argmaxes():
    # Three classes: rows 0 and 2 predicted right, row 1 wrong (argmax 0, target 2).
    mlp = MLP((3, 3), output="identity", loss="softmax_cross_entropy")
    A_L = np.array([[0.0, 2.0, 1.0], [5.0, -1.0, 4.0], [0.0, 0.0, 3.0]])
    Y = np.eye(3)[[1, 2, 2]]
    assert accuracy_of(mlp, A_L, Y) == pytest.approx(2 / 3, abs=1e-15)
    # Two classes one-hot: the target is the argmax of each row, not its first column.
    mlp2 = MLP((3, 2), output="identity", loss="mse")
    A2 = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # predicted 1, 0, 1, 0
    Y2 = np.eye(2)[[1, 0, 0, 0]]  # right, right, wrong, right
    assert accuracy_of(mlp2, A2, Y2) == pytest.approx(3 / 4, abs=1e-15)


def test_accuracy_of_a_single_0_1_output():
    mlp = MLP((3, 1), output="identity", loss="bce_logits")
    A_L = np.array([[2.0], [-1.0], [0.5], [-3.0]])  # predicted 1, 0, 1, 0
    Y = np.array([[1.0], [1.0], [1.0], [0.0]])  # right, wrong, right, right
    assert accuracy_of(mlp, A_L, Y) == pytest.approx(3 / 4, abs=1e-15)


# --- activations keep the dtype ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_and_derivatives_keep_float32(name):
    """A float32 run must stay float32: the oracle fails a float64 tensor in a float32 run."""
    act = get_activation(name)
    Z = np.array([[-1.5, -0.25, 0.0, 0.5, 2.0]], dtype=np.float32)
    A = act.forward(Z)
    assert A.dtype == np.float32
    assert act.derivative(Z, A).dtype == np.float32


# --- softmax shifts each row by its own max -----------------------------------------------


# Row 0's logits are near +1000, row 1's near -1000: shifting by one max for the whole
# batch would send every exp of row 1 to 0 (exp(-2000)), and 0/0 is NaN.
WIDE_LOGITS = np.array([[1000.0, 0.0], [-1000.0, -1001.0]])


def test_softmax_of_rows_on_very_different_scales():
    e = math.exp(-1.0)
    expected = [[1.0, 0.0], [1 / (1 + e), e / (1 + e)]]  # softmax([0, -1]) for row 1
    np.testing.assert_allclose(softmax(WIDE_LOGITS), expected, rtol=1e-14, atol=0)


def test_softmax_cross_entropy_of_rows_on_very_different_scales():
    # Row 0, class 0: -log softmax = log(1 + e^-1000) = 0 in float64.
    # Row 1, class 1: -log(e^-1 / (1 + e^-1)) = 1 + log(1 + e^-1).
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    e = math.exp(-1.0)
    loss, dA = softmax_cross_entropy(WIDE_LOGITS, Y)
    assert loss == pytest.approx((0.0 + 1.0 + math.log1p(e)) / 2, rel=1e-14)
    P = [[1.0, 0.0], [1 / (1 + e), e / (1 + e)]]
    np.testing.assert_allclose(dA, (np.array(P) - Y) / 2, rtol=1e-14, atol=1e-300)


# --- the network's definition ------------------------------------------------------------


def test_mlp_sizes_given_as_a_list_become_a_tuple():
    mlp = MLP([4, 3, 1])
    assert mlp.sizes == (4, 3, 1) and isinstance(mlp.sizes, tuple)
    assert mlp == MLP((4, 3, 1)) and hash(mlp) == hash(MLP((4, 3, 1)))


@pytest.mark.parametrize("bad", [True, 2.5, "3"], ids=["bool", "float", "str"])
def test_mlp_widths_must_be_integers(bad):
    with pytest.raises(ScratchInputError, match="at least two positive integer widths"):
        MLP((4, bad, 1))


def test_mlp_widths_may_be_numpy_integers():
    assert MLP((np.int64(4), np.int32(3), 1)).n_layers == 2


def test_softmax_head_counts_the_outputs_of_the_last_layer():
    # n_L = 2 is enough; a narrow hidden layer does not matter; a single output is refused.
    assert MLP((4, 2), loss="softmax_cross_entropy").sizes[-1] == 2
    assert MLP((4, 1, 3), loss="softmax_cross_entropy").sizes[-1] == 3
    message = "softmax_cross_entropy needs at least 2 outputs (n_L >= 2)"
    with pytest.raises(ScratchInputError, match=exactly(message)):
        MLP((4, 5, 1), loss="softmax_cross_entropy")


# --- initial weights ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"])
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


def test_unknown_initializer_lists_the_known_ones():
    message = (
        "unknown initializer 'lecun'; choose one of "
        "glorot_uniform, glorot_normal, he_normal, he_uniform"
    )
    with pytest.raises(ScratchInputError, match=exactly(message)):
        init_params(MLP_421, 0, "lecun")


# --- checks on a training step's inputs --------------------------------------------------


def step(params, X=None, Y=None):
    X = np.ones((3, 4)) if X is None else X
    Y = np.ones((3, 1)) if Y is None else Y
    return train_step(MLP_421, Optimizer("sgd"), params, {"step": 0}, X, Y)


def test_missing_parameters_are_named():
    params = init_params(MLP_421, 0)
    del params["b3"]
    message = (
        "parameters must be ['W1', 'b1', 'W2', 'b2', 'W3', 'b3']; "
        "got ['W1', 'W2', 'W3', 'b1', 'b2']"
    )
    with pytest.raises(ScratchInputError, match=exactly(message)):
        step(params)


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("W1", (3, 4), "W1 has shape (3, 4), expected (4, 3) for sizes (4, 3, 2, 1)"),
        # b1 of shape (1,) would broadcast silently: only the check stops it.
        ("b1", (1,), "b1 has shape (1,), expected (3,) for sizes (4, 3, 2, 1)"),
    ],
)
def test_first_layer_parameter_shapes_are_checked(name, shape, message):
    params = init_params(MLP_421, 0)
    params[name] = np.zeros(shape)
    with pytest.raises(ScratchInputError, match=exactly(message)):
        step(params)


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
def test_bad_batch_messages_in_full(X, Y, message):
    with pytest.raises(ScratchInputError, match=exactly(message)):
        step(init_params(MLP_421, 0), X, Y)


# --- the training loop's divergence error -------------------------------------------------


def test_non_finite_loss_error_carries_the_loss():
    # Z = 1e200 · 1e200 overflows to inf at the first step, so the MSE loss is inf.
    mlp = MLP((1, 1), output="identity", loss="mse")
    params = {"W1": np.array([[1e200]]), "b1": np.array([0.0])}
    X, Y = np.array([[1e200]]), np.array([[0.0]])
    steps = train(mlp, Optimizer("sgd"), params, X, Y, [np.arange(1)])
    with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError) as info:
        list(steps)
    assert info.value.step == 0
    assert info.value.loss == math.inf
    assert str(info.value).startswith("the loss is inf at step 0: training diverged")


# --- the per-example loop ----------------------------------------------------------------


def test_per_example_loop_with_a_single_row(rng):
    # B = 1: the loop has exactly one example; its trace is the batch's trace.
    mlp = MLP((4, 3, 2), "tanh", "identity", "mse")
    params = init_params(mlp, seed=1)
    X, Y = rng.normal(size=(1, 4)), rng.normal(size=(1, 2))
    literal = forward_backward_per_example(mlp, params, X, Y)
    batch = forward_backward(mlp, params, X, Y)
    assert list(literal) == list(batch)
    for name in batch:
        np.testing.assert_allclose(literal[name], batch[name], rtol=1e-15, err_msg=name)


# --- finite differences refuse anything but float64 --------------------------------------


@pytest.mark.parametrize("which", ["params", "X"])
def test_finite_differences_refuse_float32(which):
    mlp = MLP((2, 1), output="identity", loss="mse")
    params = init_params(mlp, 0, dtype="float32" if which == "params" else "float64")
    X = np.ones((2, 2), dtype=np.float32 if which == "X" else np.float64)
    message = "finite differences need float64 parameters and inputs"
    with pytest.raises(ValueError, match=exactly(message)):
        numerical_gradients(mlp, params, X, np.ones((2, 1)))


# --- optimizer hyperparameters -----------------------------------------------------------


def test_adam_accepts_beta1_zero():
    # β1 = 0: m = g, m̂ = g / (1 - 0^t) = g. One weight W = 1, g = 0.5, lr = 0.1:
    # s = 0.001·0.25, ŝ = 0.25, W = 1 - 0.1·0.5 / (0.5 + ε).
    opt = Optimizer("adam", lr=0.1, beta1=0.0)
    params = {"W1": np.array([[1.0]])}
    new, state = update(opt, params, {"W1": np.array([[0.5]])}, init_state(opt, params))
    assert new["W1"][0, 0] == pytest.approx(1 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-15)
    assert state["adam_m_W1"][0, 0] == 0.5


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
def test_impossible_eps_l2_and_decay_are_refused(kwargs):
    with pytest.raises(ValueError, match=exactly("eps must be > 0, and l2 and weight_decay >= 0")):
        Optimizer(**kwargs)


def test_adamw_with_l2_message_in_full():
    message = "adamw takes decoupled weight_decay, not l2; set l2 = 0"
    with pytest.raises(ValueError, match=exactly(message)):
        Optimizer("adamw", l2=0.1)


# --- unknown names list the known ones, comma-separated ---------------------------------


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (
            lambda: get_activation("swish"),
            "unknown activation 'swish'; choose one of identity, leaky_relu, relu, sigmoid, tanh",
        ),
        (
            lambda: get_loss("hinge"),
            "unknown loss 'hinge'; choose one of bce, bce_logits, mse, softmax_cross_entropy",
        ),
        (
            lambda: Optimizer("rmsprop"),
            "unknown optimizer 'rmsprop'; choose one of sgd, momentum, nesterov, adam, adamw",
        ),
    ],
    ids=["activation", "loss", "optimizer"],
)
def test_unknown_name_messages_in_full(lookup, message):
    with pytest.raises(ValueError, match=exactly(message)):
        lookup()
