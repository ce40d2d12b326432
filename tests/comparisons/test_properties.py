"""Property tests: random networks (depth 1–4, widths 1–32), batch sizes and activations —
scratch agrees with finite differences and with both references on one training step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comparisons.oracle.compare import assert_traces_agree, compare
from comparisons.oracle.gradcheck import FD, fd_allowed
from comparisons.oracle.roundoff import RoundoffStep, allowances
from comparisons.run.engines import make_engine
from scratch import MLP, Optimizer, init_params, numerical_gradients
from scratch.optimizers import init_state
from scratch.training import train_step
from tests.scratch.cases import LOSS_HEADS, targets

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "identity"]


@st.composite
def problems(draw):
    """A random network, loss head, optimizer and batch, seeded from the draw."""
    hidden = draw(st.lists(st.integers(1, 32), min_size=0, max_size=3))  # depth 1–4
    loss, output, K = draw(st.sampled_from(LOSS_HEADS))
    activation = draw(st.sampled_from(ACTIVATIONS))
    n_in = draw(st.integers(1, 8))
    B = draw(st.integers(1, 17))
    optimizer = draw(st.sampled_from(["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"]))
    seed = draw(st.integers(0, 2**16))
    mlp = MLP((n_in, *hidden, K), activation, output, loss)
    rng = np.random.default_rng(seed)
    params = init_params(mlp, seed)
    # Biases off zero, so that no pre-activation sits exactly at a ReLU kink.
    params = {
        p: v + rng.uniform(0.01, 0.1, v.shape) if p[0] == "b" else v for p, v in params.items()
    }
    X = rng.normal(size=(B, n_in))
    Y = targets(rng, loss, B, K)
    opt = Optimizer(optimizer, lr=0.01, weight_decay=0.01 if optimizer == "adamw" else 0.0)
    return mlp, opt, params, X, Y


def examples(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,  # JAX compiles each new shape; the first call is slow by design
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,  # the same examples every run: CI does not flake on a rare draw
    )


@examples(60)
@given(problems())
def test_backprop_agrees_with_finite_differences(problem):
    mlp, _, params, X, Y = problem
    ours = train_step(mlp, Optimizer(), params, init_state(Optimizer(), params), X, Y)[0]
    numeric = numerical_gradients(mlp, params, X, Y)
    loss = float(ours["loss"])
    for name, expected in numeric.items():
        c = compare(name, ours[name], expected, FD, fd_allowed(expected, loss))
        assert c.ok, c.describe()


def agrees_with(reference: str, problem) -> None:
    mlp, opt, params, X, Y = problem
    state = init_state(opt, params)
    ours = train_step(mlp, opt, params, state, X, Y)[0]
    engine = make_engine(reference, mlp, opt, "float64")
    engine.set_state(params, state)
    allowed = allowances(RoundoffStep(mlp, opt, params, state, X, Y), ours, "float64")
    assert_traces_agree(ours, engine.step(X, Y), reference, "one step", allowed)


@pytest.mark.torch
@examples(40)
@given(problems())
def test_scratch_agrees_with_pytorch(problem):
    agrees_with("torch", problem)


@pytest.mark.jax
@pytest.mark.slow  # every example is a new shape, so a new XLA compilation (~0.5 s)
@examples(25)
@given(problems())
def test_scratch_agrees_with_jax(problem):
    agrees_with("jax", problem)
