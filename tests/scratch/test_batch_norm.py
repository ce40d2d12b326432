"""Batch normalization in scratch: its forward pass and running statistics against NumPy
written out here, its two backward forms held equal, finite differences, evaluation with the
running statistics, and the inputs it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from scratch import MLP, forward_backward, forward_backward_per_example, init_params
from scratch.config import Optimizer, ScratchInputError
from scratch.gradcheck import numerical_gradients
from scratch.network import batch_norm_backward_compact, dropout_masks, evaluate, forward
from scratch.optimizers import init_state
from scratch.trace_schema import names_of, param_names
from scratch.training import train_step
from tests.scratch.cases import ACTIVATION_LOSS, exactly, targets


def normalized_problem(rng, hidden, loss, out, K, B, sizes=(4, 6, 5), **bn):
    mlp = MLP((*sizes, K), hidden, out, loss, batch_norm=True, **bn)
    params = init_params(mlp, seed=3)
    # γ and β off their start (1 and 0), so that a γ or β left out of an equation shows
    params = {p: v * 1.3 + 0.2 if p.startswith(("gamma", "beta")) else v for p, v in params.items()}
    return mlp, params, rng.normal(size=(B, sizes[0])) * 3 + 1, targets(rng, loss, B, K)


def test_a_normalized_layer_has_gamma_and_beta_and_no_bias():
    mlp = MLP((4, 6, 5, 1), batch_norm=True)
    params = init_params(mlp, seed=0)
    assert list(params) == param_names(3, True) == [
        "W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"
    ]  # fmt: skip
    np.testing.assert_array_equal(params["gamma1"], np.ones(6))
    np.testing.assert_array_equal(params["beta2"], np.zeros(5))
    state = init_state(Optimizer(), params)
    # (assert_array_equal would accept a 0-d 0 or 1: it broadcasts)
    assert state["running_mean1"].shape == (6,) and state["running_var2"].shape == (5,)
    np.testing.assert_array_equal(state["running_mean1"], np.zeros(6))
    np.testing.assert_array_equal(state["running_var2"], np.ones(5))


def test_the_forward_pass_and_running_statistics_are_the_textbook_ones(rng):
    """μ, the biased σ², x̂ and N per unit over the batch; the running statistics with
    PyTorch's convention (m weighs the batch, the variance kept is unbiased)."""
    mlp, params, X, Y = normalized_problem(rng, "tanh", "mse", "identity", 1, B=7, bn_momentum=0.2)
    opt = Optimizer()
    state = init_state(opt, params)
    state["running_mean1"], state["running_var1"] = np.full(6, 0.5), np.full(6, 2.0)
    trace = train_step(mlp, opt, params, state, X, Y)[0]
    Z = X @ params["W1"]
    mean, var = Z.sum(axis=0) / 7, ((Z - Z.sum(axis=0) / 7) ** 2).sum(axis=0) / 7
    np.testing.assert_allclose(trace["mu1"], mean, rtol=1e-13)
    np.testing.assert_allclose(trace["var1"], var, rtol=1e-13)
    xhat = (Z - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(trace["xhat1"], xhat, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(trace["N1"], params["gamma1"] * xhat + params["beta1"], rtol=1e-12)
    np.testing.assert_allclose(trace["A1"], np.tanh(trace["N1"]), rtol=1e-15)
    np.testing.assert_allclose(trace["running_mean1"], 0.8 * 0.5 + 0.2 * mean, rtol=1e-14)
    unbiased = ((Z - mean) ** 2).sum(axis=0) / 6
    np.testing.assert_allclose(trace["running_var1"], 0.8 * 2.0 + 0.2 * unbiased, rtol=1e-14)
    np.testing.assert_allclose(xhat.mean(axis=0), 0, atol=1e-14)  # normalized per unit
    np.testing.assert_allclose(xhat.var(axis=0), var / (var + 1e-5), rtol=1e-12)


def test_each_intermediate_gradient_is_the_derivative_along_the_step_by_step_graph(rng):
    """dxhat, dvar and dmu (all three in the trace) are the derivatives of f = Σ dN ⊙ N, the
    loss's first-order change through N with the upstream error dN held fixed, along the
    graph the docstring writes: x̂(μ, σ²) = (Z - μ)/√(σ² + ε), σ²(μ) = mean((Z - μ)²),
    N = γ ⊙ x̂ + β; each unit apart. dZ alone cannot show a wrong dmu: a wrong centred Z
    (Z + μ) changes dmu and dZ's other terms so that dZ comes out right."""
    from scratch.network import batch_norm, batch_norm_backward

    Z, dN = rng.normal(size=(6, 3)) * 2 + 1.5, rng.normal(size=(6, 3))  # μ far from 0
    gamma, eps, h = np.array([0.7, 1.3, -0.4]), 1e-5, 1e-6
    bn = batch_norm(Z, gamma, np.zeros(3), eps)
    mu, var = bn["mu"], bn["var"]
    got = batch_norm_backward(dN, Z, mu, var, bn["xhat"], gamma, eps)

    def f(mu, var=None):  # per unit (3,)
        var = ((Z - mu) ** 2).mean(axis=0) if var is None else var
        return (dN * gamma * (Z - mu) / np.sqrt(var + eps)).sum(axis=0)

    dvar = (f(mu, var + h) - f(mu, var - h)) / (2 * h)  # x̂ through σ², μ held
    dmu = (f(mu + h) - f(mu - h)) / (2 * h)  # through x̂ and through σ²(μ)
    np.testing.assert_allclose(got["dvar"], dvar, rtol=1e-6)
    np.testing.assert_allclose(got["dmu"], dmu, rtol=1e-6)
    np.testing.assert_allclose(got["dxhat"], dN * gamma, rtol=1e-15)


@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
def test_the_step_by_step_and_compact_backward_forms_agree(rng, hidden, loss, out, K):
    mlp, params, X, Y = normalized_problem(rng, hidden, loss, out, K, B=7)
    trace = forward_backward(mlp, params, X, Y)
    for l in (1, 2):
        compact = batch_norm_backward_compact(
            trace[f"dN{l}"], trace[f"xhat{l}"], trace[f"var{l}"], params[f"gamma{l}"], 1e-5
        )
        scale = np.max(np.abs(trace[f"dZ{l}"]))
        np.testing.assert_allclose(compact, trace[f"dZ{l}"], rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
@pytest.mark.parametrize("dropped", [False, True], ids=["plain", "with-dropout"])
def test_backprop_through_batch_norm_matches_finite_differences(rng, hidden, loss, out, K, dropped):
    """The classic gradcheck exercise: dZ, dW, dgamma and dbeta of every layer, the batch's
    statistics moving with every perturbation (with dropout after it: the masks fixed)."""
    mlp, params, X, Y = normalized_problem(rng, hidden, loss, out, K, B=6)
    masks = None
    if dropped:
        mlp = MLP(mlp.sizes, hidden, out, loss, dropout=0.3, batch_norm=True)
        masks = dropout_masks(mlp, 6, 1, 0)
    analytic = forward_backward(mlp, params, X, Y, masks)
    numeric = numerical_gradients(mlp, params, X, Y, masks=masks)
    assert {"dgamma1", "dbeta2", "dZ1"} <= set(numeric)
    for name, expected in numeric.items():
        # + 1e-9: below it a central difference resolves nothing (dbeta1 with an identity
        # activation is exactly 0: the next layer's normalization takes any shift out)
        atol = 1e-6 * np.max(np.abs(expected)) + 1e-9
        np.testing.assert_allclose(analytic[name], expected, rtol=0, atol=atol, err_msg=name)


def test_finite_differences_would_see_a_wrong_batch_norm_backward(rng):
    """The check above can fail: dZ without the mean's path is off by far more than it allows."""
    mlp, params, X, Y = normalized_problem(rng, "tanh", "mse", "identity", 1, B=6)
    trace = forward_backward(mlp, params, X, Y)
    numeric = numerical_gradients(mlp, params, X, Y)
    without_mean = trace["dZ1"] - trace["dmu1"] / 6
    assert not np.allclose(without_mean, numeric["dZ1"], atol=1e-6 * np.abs(numeric["dZ1"]).max())


def test_the_output_does_not_depend_on_the_scale_of_a_normalized_layers_weights(rng):
    """N_l = BN(A @ (c·W_l)) = BN(A @ W_l) for c > 0 (up to ε): what batch norm is for."""
    mlp, params, X, _ = normalized_problem(rng, "relu", "mse", "identity", 1, B=8)
    scaled = {**params, "W1": params["W1"] * 7.0}
    a, b = forward(mlp, params, X), forward(mlp, scaled, X)
    np.testing.assert_allclose(a["N1"], b["N1"], rtol=1e-5, atol=1e-6)


def test_evaluation_normalizes_with_the_running_statistics(rng):
    mlp, params, X, _ = normalized_problem(rng, "sigmoid", "mse", "identity", 1, B=5)
    running = {
        "running_mean1": rng.normal(size=6),
        "running_var1": rng.random(6) + 0.5,
        "running_mean2": rng.normal(size=5),
        "running_var2": rng.random(5) + 0.5,
    }
    A = X
    for l in (1, 2):
        Z = A @ params[f"W{l}"]
        N = params[f"gamma{l}"] * (Z - running[f"running_mean{l}"])
        N = N / np.sqrt(running[f"running_var{l}"] + 1e-5) + params[f"beta{l}"]
        A = 1 / (1 + np.exp(-N))
    expected = A @ params["W3"] + params["b3"]
    np.testing.assert_allclose(evaluate(mlp, params, X, running), expected, rtol=1e-12)
    # one row at a time gives the same: evaluation does not couple the rows
    rows = np.concatenate([evaluate(mlp, params, X[i : i + 1], running) for i in range(5)])
    np.testing.assert_allclose(rows, expected, rtol=1e-12)


def test_a_step_traces_the_schemas_names_and_the_state_keeps_the_running_statistics(rng):
    mlp, params, X, Y = normalized_problem(rng, "tanh", "bce_logits", "identity", 1, B=5)
    opt = Optimizer("adam", lr=0.01, clip_norm=1.0)
    trace, _, state = train_step(mlp, opt, params, init_state(opt, params), X, Y)
    assert list(trace) == names_of(mlp, opt)
    for name in ("running_mean1", "running_var2"):
        np.testing.assert_array_equal(state[name], trace[name])


def test_batch_norm_refuses_a_batch_of_one_row_and_has_no_per_example_form(rng):
    mlp, params, X, Y = normalized_problem(rng, "tanh", "mse", "identity", 1, B=1)
    opt = Optimizer()
    message = (
        "batch normalization needs at least 2 rows in a batch (one row has no variance); got 1"
    )
    with pytest.raises(ScratchInputError, match=exactly(message)):
        train_step(mlp, opt, params, init_state(opt, params), X, Y)
    message = (
        "batch normalization couples the rows of a batch: it has no per-example form "
        "(batch_norm_backward_compact is its other form)"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        forward_backward_per_example(mlp, params, X, Y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_norm": 1}, "batch_norm must be true or false; got 1"),
        ({"batch_norm": True, "bn_momentum": 1.5}, "bn_momentum must be in [0, 1]; got 1.5"),
        ({"batch_norm": True, "bn_eps": 0.0}, "bn_eps must be a finite number > 0; got 0.0"),
        (
            {"sizes": (3, 1), "batch_norm": True},
            "batch_norm acts on hidden layers, and this network has none: add a hidden layer "
            "or set batch_norm = false",
        ),
    ],
)
def test_bad_batch_norm_settings_are_refused(kwargs, message):
    with pytest.raises(ScratchInputError, match=exactly(message)):
        MLP(**{"sizes": (3, 2, 1), **kwargs})


def test_the_backward_pass_stays_finite_where_z_is_wide_in_float32():
    """dvar = Σ dxhat ⊙ (Z - μ)·(σ² + ε)^(-3/2) multiplied two large factors first and
    overflowed float32 (Z ~ 1e15, dN ~ 1e21, a run training away), where PyTorch's autograd
    did not: written with x̂ it is the same number, and finite."""
    from scratch.network import batch_norm, batch_norm_backward

    rng = np.random.default_rng(0)
    Z64, dN64 = rng.normal(size=(5, 3)) * 1e15, rng.normal(size=(5, 3)) * 1e21
    gamma = np.full(3, 2.0)
    results = {}
    for dtype in (np.float64, np.float32):
        Z, dN, g = Z64.astype(dtype), dN64.astype(dtype), gamma.astype(dtype)
        bn = batch_norm(Z, g, g * 0, 1e-5)
        results[dtype] = batch_norm_backward(dN, Z, bn["mu"], bn["var"], bn["xhat"], g, 1e-5)
    for name, value in results[np.float32].items():
        assert np.isfinite(value).all(), name
        np.testing.assert_allclose(value, results[np.float64][name], rtol=2e-3, err_msg=name)
