"""The JAX reference against scratch: every tensor of a training step's trace.

``reference.jax_mlp`` is imported inside the tests (the ``jax_mlp`` fixture), never at the
top, so that collecting this file does not import JAX where it is not installed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scratch import MLP, Optimizer, init_params
from scratch.activations import ACTIVATIONS
from scratch.optimizers import init_state
from scratch.training import train_step
from tests.scratch.cases import LOSS_HEADS, targets

pytestmark = pytest.mark.jax

B = 7  # batch size: odd, so that no reduction is a power of two by luck

OPTIMIZERS = [
    Optimizer("sgd", lr=0.1),
    Optimizer("momentum", lr=0.1, momentum=0.9),
    Optimizer("nesterov", lr=0.1, momentum=0.9),
    Optimizer("adam", lr=0.01),
    Optimizer("adamw", lr=0.01, weight_decay=0.1),
]


def with_l2(opt: Optimizer) -> Optimizer:
    return dataclasses.replace(opt, l2=0.01)


def label(opt: Optimizer) -> str:
    return opt.name + ("+l2" if opt.l2 else "")


def pairwise_matrix() -> list:
    """Every (hidden activation, loss head) once, with the optimizer turning along both, so
    that every activation and every head meets every optimizer (each optimizer but adamw,
    which takes decoupled decay instead, with L2 on odd heads and without it on even ones).
    The full product would compile 150 steps (~50 s) and test no further interaction."""
    cases = []
    for a, hidden in enumerate(ACTIVATIONS):
        for h, (loss, out, K) in enumerate(LOSS_HEADS):
            opt = OPTIMIZERS[(a + h) % len(OPTIMIZERS)]
            if h % 2 and opt.name != "adamw":
                opt = with_l2(opt)
            cases.append(
                pytest.param(hidden, loss, out, K, opt, id=f"{hidden}-{loss}-{out}-{label(opt)}")
            )
    return cases


@pytest.fixture
def jax_mlp():
    import reference.jax_mlp

    return reference.jax_mlp


def problem(rng, hidden, loss, out, K, opt, dtype):
    """A (4, 6, 5, K) network's first parameters and state, and a batch, in ``dtype``."""
    mlp = MLP((4, 6, 5, K), hidden, out, loss)
    params = init_params(mlp, seed=3, dtype=dtype)
    return mlp, params, init_state(opt, params), *batch(rng, mlp, dtype)


def batch(rng, mlp, dtype):
    X = rng.normal(size=(B, mlp.sizes[0])).astype(dtype)
    return X, targets(rng, mlp.loss, B, mlp.sizes[-1]).astype(dtype)


def assert_traces_agree(got, expected, rtol, atol_scale, step):
    """Same names in the same order, same dtypes and shapes, then values elementwise:
    |got - expected| <= atol_scale·max|expected| + rtol·|expected|, tensor by tensor."""
    assert list(got) == list(expected), f"step {step}: trace names differ"
    for name, want in expected.items():
        have = got[name]
        assert have.dtype == want.dtype, f"step {step}, {name}: {have.dtype} != {want.dtype}"
        assert have.shape == want.shape, f"step {step}, {name}: {have.shape} != {want.shape}"
        atol = atol_scale * float(np.max(np.abs(want)))
        np.testing.assert_allclose(have, want, rtol=rtol, atol=atol, err_msg=f"step {step}, {name}")


def two_steps_agree(engine, mlp, opt, params, state, X, Y, rng, rtol, atol_scale):
    """Step both engines from scratch's state twice: from the zero state, then from the
    nonzero state scratch reached, loaded into the engine through ``set_state``."""
    for step in (1, 2):
        engine.set_state(params, state)
        got = engine.step(X, Y)
        expected, params, state = train_step(mlp, opt, params, state, X, Y)
        assert_traces_agree(got, expected, rtol, atol_scale, step)
        X, Y = batch(rng, mlp, X.dtype)


# Slow: each case compiles its own step (~0.5 s); the lockstep tests in the quick tier cover
# the same matrix against this engine.
@pytest.mark.slow
@pytest.mark.parametrize(("hidden", "loss", "out", "K", "opt"), pairwise_matrix())
def test_float64_trace_equals_scratchs(jax_mlp, rng, hidden, loss, out, K, opt):
    mlp, params, state, X, Y = problem(rng, hidden, loss, out, K, opt, "float64")
    engine = jax_mlp.JaxMLP(mlp, opt, dtype="float64")
    two_steps_agree(engine, mlp, opt, params, state, X, Y, rng, rtol=1e-9, atol_scale=1e-12)


FLOAT32_CASES = [
    pytest.param(hidden, loss, out, K, opt, id=f"{hidden}-{loss}-{out}-{label(opt)}")
    for hidden, (loss, out, K), opt in [
        ("sigmoid", LOSS_HEADS[4], OPTIMIZERS[2]),
        ("relu", LOSS_HEADS[5], with_l2(OPTIMIZERS[1])),
        # A linear network with adamw: the worst case seen over the whole product.
        ("identity", LOSS_HEADS[0], OPTIMIZERS[4]),
    ]
]


@pytest.mark.parametrize(("hidden", "loss", "out", "K", "opt"), FLOAT32_CASES)
def test_float32_trace_is_float32_and_close_to_scratchs(jax_mlp, rng, hidden, loss, out, K, opt):
    """A few cases (the float64 matrix checks the equations). 1e-4 is ~1000 float32 ulps: the
    engines round differently at every operation, and sums over the batch (db, dW) and
    ΔW = new - old lose digits to cancellation, so the allowance is relative to each tensor's
    largest entry as well as to each entry."""
    mlp, params, state, X, Y = problem(rng, hidden, loss, out, K, opt, "float32")
    engine = jax_mlp.JaxMLP(mlp, opt, dtype="float32")
    two_steps_agree(engine, mlp, opt, params, state, X, Y, rng, rtol=1e-4, atol_scale=1e-4)
    assert engine.predict(X).dtype == np.float32
    assert {v.dtype for v in engine.params().values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize(
    ("plain", "decayed", "decay"),
    [
        (Optimizer("sgd", lr=0.1), Optimizer("sgd", lr=0.1, l2=0.05), 0.05),
        (Optimizer("adam", lr=0.01), Optimizer("adamw", lr=0.01, weight_decay=0.05), 0.05),
    ],
    ids=["sgd-l2", "adamw"],
)
def test_weight_decay_touches_weights_only(jax_mlp, rng, plain, decayed, decay):
    """Against the same optimizer without decay: biases move identically, and each weight
    moves by an extra -lr·λ·W (for sgd the L2 gradient λ·W times lr; adamw's decoupled decay)."""
    mlp, params, state, X, Y = problem(rng, "tanh", "mse", "identity", 2, plain, "float64")
    deltas = []
    for opt in (plain, decayed):
        engine = jax_mlp.JaxMLP(mlp, opt)
        engine.set_state(params, state)
        deltas.append(engine.step(X, Y))
    for l in (1, 2, 3):
        np.testing.assert_array_equal(deltas[1][f"Δb{l}"], deltas[0][f"Δb{l}"])
        np.testing.assert_allclose(
            deltas[1][f"ΔW{l}"] - deltas[0][f"ΔW{l}"],
            -plain.lr * decay * params[f"W{l}"],
            rtol=1e-9,
            atol=1e-15,
        )


def test_bce_gradient_where_the_output_saturates_follows_pytorch(jax_mlp, rng):
    """Where 1e-12 > A(1-A) > 0 (27.6 < Z_L < 36.7 in float64) PyTorch's BCELoss backward,
    and so scratch, floors A(1-A) at 1e-12, shrinking dZ_L to ~0.09× the true derivative at
    Z_L = 30: the JAX loss adopts that convention there (see reference/jax_mlp.py)."""
    mlp, params, state, X, _ = problem(rng, "tanh", "bce", "sigmoid", 1, OPTIMIZERS[0], "float64")
    params["b3"] = params["b3"] + 30.0  # Z_L ≈ 30: A_L = 1 - ~1e-13
    Y = np.zeros((B, 1))  # confidently wrong: the gradient is large, (A - Y)/B ≈ 1/B
    engine = jax_mlp.JaxMLP(mlp, OPTIMIZERS[0])
    engine.set_state(params, state)
    expected, _, _ = train_step(mlp, OPTIMIZERS[0], params, state, X, Y)
    np.testing.assert_allclose(engine.step(X, Y)["dZ3"], expected["dZ3"], rtol=1e-9)


def test_bce_on_an_output_of_exactly_one_gives_no_nan(jax_mlp, rng):
    """σ(Z_L) rounds to 1.0 (Z_L > 16.6 in float32, > 36.7 in float64): log(1 - A) = -inf is
    clamped to -100, and the gradient through the clamp is 0, as scratch's is, not NaN."""
    mlp, params, state, X, _ = problem(rng, "tanh", "bce", "sigmoid", 1, OPTIMIZERS[0], "float32")
    params["b3"] = params["b3"] + np.float32(20.0)
    Y = np.tile(np.asarray([[0.0], [1.0]], np.float32), (4, 1))[:B]
    engine = jax_mlp.JaxMLP(mlp, OPTIMIZERS[0], dtype="float32")
    engine.set_state(params, state)
    got = engine.step(X, Y)
    expected, _, _ = train_step(mlp, OPTIMIZERS[0], params, state, X, Y)
    assert np.all(got["A3"] == 1.0)
    assert all(np.all(np.isfinite(v)) for v in got.values())
    assert_traces_agree(got, expected, rtol=1e-4, atol_scale=1e-6, step=1)


def test_one_compiled_step_per_batch_shape_and_a_partial_batch_agrees(jax_mlp, rng):
    opt = OPTIMIZERS[3]
    mlp, params, state, X, Y = problem(rng, "relu", "bce_logits", "identity", 1, opt, "float64")
    engine = jax_mlp.JaxMLP(mlp, opt)
    engine.set_state(params, state)
    engine.step(X, Y)
    engine.set_state(params, state)
    engine.step(X, Y)
    assert engine._train_step._cache_size() == 1  # the second step reused the compiled step

    engine.set_state(params, state)
    got = engine.step(X[:3], Y[:3])  # the last, partial batch of an epoch: traced once more
    assert engine._train_step._cache_size() == 2
    expected, params, _ = train_step(mlp, opt, params, state, X[:3], Y[:3])
    assert_traces_agree(got, expected, rtol=1e-9, atol_scale=1e-12, step=1)

    assert list(engine.params()) == list(params)
    for p, value in engine.params().items():
        np.testing.assert_array_equal(value, got[p])
    np.testing.assert_allclose(
        engine.predict(X), train_step(mlp, opt, params, state, X, Y)[0]["A3"], rtol=1e-12
    )


@pytest.fixture
def x64_off():
    """JAX with 64-bit types off, as in a fresh process; the flag is restored afterwards."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield jax.config
    jax.config.update("jax_enable_x64", before)


def test_float32_needs_no_x64_and_float64_turns_it_on(jax_mlp, rng, x64_off):
    opt = OPTIMIZERS[3]
    mlp, params, state, X, Y = problem(rng, "sigmoid", "mse", "identity", 2, opt, "float32")
    engine = jax_mlp.JaxMLP(mlp, opt, dtype="float32")
    assert not x64_off.jax_enable_x64
    engine.set_state(params, state)
    got = engine.step(X, Y)
    expected, _, _ = train_step(mlp, opt, params, state, X, Y)
    assert_traces_agree(got, expected, rtol=1e-4, atol_scale=1e-4, step=1)
    assert not x64_off.jax_enable_x64

    jax_mlp.JaxMLP(mlp, opt, dtype="float64")
    assert x64_off.jax_enable_x64


@pytest.mark.parametrize(
    ("kwargs", "valid"),
    [({"dtype": "float16"}, "float32, float64"), ({"device": "tpu"}, "cpu, gpu")],
    ids=["dtype", "device"],
)
def test_bad_names_list_the_valid_ones(jax_mlp, kwargs, valid):
    mlp = MLP((2, 1), "tanh", "identity", "mse")
    with pytest.raises(ValueError, match=valid):
        jax_mlp.JaxMLP(mlp, OPTIMIZERS[0], **kwargs)


def test_set_state_names_what_is_missing(jax_mlp):
    mlp = MLP((2, 1), "tanh", "identity", "mse")
    params = init_params(mlp, seed=0)
    engine = jax_mlp.JaxMLP(mlp, OPTIMIZERS[1])
    with pytest.raises(ValueError, match="momentum_b1"):
        engine.set_state(params, {"step": 0, "momentum_W1": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="W1"):
        engine.set_state({"b1": params["b1"]}, init_state(OPTIMIZERS[1], params))
