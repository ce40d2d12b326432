"""Optimizer steps against values derived by hand from the formulas in optimizers.py.

One weight W = [[1.0]] and one bias b = [0.0], gradient 0.5 on both at step 1 and 0.25 at
step 2, lr = 0.1 — small enough to follow on paper.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratch.config import MLP, Optimizer, ScratchInputError
from scratch.initializers import init_params
from scratch.optimizers import clip_by_global_norm, init_state, learning_rate, update
from scratch.training import train_step
from tests.scratch.cases import exactly

GRADS = [0.5, 0.25]


def run(opt: Optimizer, steps: int = 2):
    params = {"W1": np.array([[1.0]]), "b1": np.array([0.0])}
    state = init_state(opt, params)
    history = []
    for g in GRADS[:steps]:
        params, state = update(opt, params, {"W1": np.array([[g]]), "b1": np.array([g])}, state)
        history.append((params["W1"][0, 0], params["b1"][0]))
    return history, state


def test_sgd_steps_by_lr_times_the_gradient():
    # W: 1 - 0.1·0.5 = 0.95, then 0.95 - 0.1·0.25 = 0.925
    (w1, _), (w2, b2) = run(Optimizer("sgd", lr=0.1))[0]
    assert (w1, w2) == pytest.approx((0.95, 0.925), abs=1e-15)
    assert b2 == pytest.approx(-0.075, abs=1e-15)


def test_momentum_steps_by_the_accumulated_velocity():
    # v1 = 0.5, W = 1 - 0.05 = 0.95;  v2 = 0.9·0.5 + 0.25 = 0.7, W = 0.95 - 0.07 = 0.88
    history, state = run(Optimizer("momentum", lr=0.1, momentum=0.9))
    assert [w for w, _ in history] == pytest.approx([0.95, 0.88], abs=1e-15)
    assert state["momentum_W1"][0, 0] == pytest.approx(0.7, abs=1e-15)


def test_nesterov_steps_by_the_gradient_plus_mu_times_the_velocity():
    # v1 = 0.5, step = 0.5 + 0.9·0.5 = 0.95, W = 1 - 0.095 = 0.905
    # v2 = 0.45 + 0.25 = 0.7, step = 0.25 + 0.63 = 0.88, W = 0.905 - 0.088 = 0.817
    history, _ = run(Optimizer("nesterov", lr=0.1, momentum=0.9))
    assert [w for w, _ in history] == pytest.approx([0.905, 0.817], abs=1e-15)


def test_adam_steps_by_the_bias_corrected_moments():
    # t=1: m = 0.05, s = 0.001·0.25 = 2.5e-4, m̂ = 0.5, ŝ = 0.25, W = 1 - 0.1·0.5/(0.5 + ε)
    # t=2: m = 0.045 + 0.025 = 0.07, s = 0.999·2.5e-4 + 0.001·0.0625 = 3.1225e-4,
    #      m̂ = 0.07/0.19, ŝ = 3.1225e-4/0.001999, W -= 0.1·m̂/(√ŝ + ε)
    eps = 1e-8
    history, state = run(Optimizer("adam", lr=0.1, eps=eps))
    w1 = 1 - 0.1 * 0.5 / (0.5 + eps)
    w2 = w1 - 0.1 * (0.07 / 0.19) / (math.sqrt(3.1225e-4 / 0.001999) + eps)
    assert [w for w, _ in history] == pytest.approx([w1, w2], rel=1e-13)
    assert state["adam_m_W1"][0, 0] == pytest.approx(0.07, rel=1e-14)
    assert state["adam_v_W1"][0, 0] == pytest.approx(3.1225e-4, rel=1e-14)
    assert state["t"] == 2


def test_rmsprop_steps_by_the_gradient_over_the_root_of_its_average_square():
    # α = 0.9 (not the default 0.99, so that the rule is seen to read it), ε outside the root:
    # t=1: v = 0.1·0.25 = 0.025,                  W = 1 - 0.1·0.5/(√0.025 + ε)
    # t=2: v = 0.9·0.025 + 0.1·0.0625 = 0.02875,  W -= 0.1·0.25/(√0.02875 + ε)
    eps = 1e-8
    history, state = run(Optimizer("rmsprop", lr=0.1, alpha=0.9, eps=eps))
    w1 = 1 - 0.1 * 0.5 / (math.sqrt(0.025) + eps)
    w2 = w1 - 0.1 * 0.25 / (math.sqrt(0.02875) + eps)
    assert [w for w, _ in history] == pytest.approx([w1, w2], rel=1e-14)
    assert [b for _, b in history] == pytest.approx([w1 - 1, w2 - 1], rel=1e-13)  # no decay
    assert state["rmsprop_v_W1"][0, 0] == pytest.approx(0.02875, rel=1e-14)
    assert state["rmsprop_v_b1"][0] == pytest.approx(0.02875, rel=1e-14)


def test_rmsprop_with_eps_outside_the_root_differs_from_optax_default_inside():
    """ε is added to √v (PyTorch's RMSprop), not to v under the root (optax's default): with
    a tiny gradient, √v ≈ |g|·√(1-α) is far below √ε, and the two forms differ by orders of
    magnitude."""
    opt = Optimizer("rmsprop", lr=1.0, alpha=0.99, eps=1e-8)
    params = {"W1": np.array([[0.0]])}
    g = 1e-6
    new, _ = update(opt, params, {"W1": np.array([[g]])}, init_state(opt, params))
    root = math.sqrt(0.01 * g * g)  # 1e-7
    assert new["W1"][0, 0] == pytest.approx(-g / (root + 1e-8), rel=1e-14)  # ≈ -9.09
    assert abs(new["W1"][0, 0]) > 10 * g / math.sqrt(root**2 + 1e-8)  # ε inside: ≈ -0.01


def test_rmsprop_alpha_must_be_in_0_1():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\); got 1"):
        Optimizer("rmsprop", alpha=1.0)


def test_adam_accepts_beta1_zero_and_keeps_m_equal_to_the_gradient():
    # β1 = 0: m = g, m̂ = g / (1 - 0^t) = g. One weight W = 1, g = 0.5, lr = 0.1:
    # s = 0.001·0.25, ŝ = 0.25, W = 1 - 0.1·0.5 / (0.5 + ε).
    opt = Optimizer("adam", lr=0.1, beta1=0.0)
    params = {"W1": np.array([[1.0]])}
    new, state = update(opt, params, {"W1": np.array([[0.5]])}, init_state(opt, params))
    assert new["W1"][0, 0] == pytest.approx(1 - 0.1 * 0.5 / (0.5 + 1e-8), rel=1e-15)
    assert state["adam_m_W1"][0, 0] == 0.5


def test_adamw_decays_weights_not_biases():
    # W: 1·(1 - 0.1·0.1) = 0.99, then the adam step 0.1·0.5/(0.5 + ε); b: the adam step only
    history, _ = run(Optimizer("adamw", lr=0.1, weight_decay=0.1), steps=1)
    step = 0.1 * 0.5 / (0.5 + 1e-8)
    assert history[0] == pytest.approx((0.99 - step, -step), rel=1e-14)


def test_l2_adds_lambda_w_to_the_weight_gradient_only():
    # W: g = 0.5 + 0.2·1 = 0.7, W = 1 - 0.07 = 0.93;  b: g = 0.5, b = -0.05
    history, _ = run(Optimizer("sgd", lr=0.1, l2=0.2), steps=1)
    assert history[0] == pytest.approx((0.93, -0.05), abs=1e-15)


def test_clipping_scales_every_gradient_by_the_norm_of_all_of_them_together():
    # ‖g‖ = √(3² + 4²) = 5 over both tensors (each alone is 3 or 4, under c = 4.5)
    grads = {"W1": np.array([[3.0]]), "b1": np.array([4.0])}
    clipped, norm = clip_by_global_norm(grads, 2.0)
    assert norm == 5.0
    scale = 2.0 / (5.0 + 1e-6)  # PyTorch's clip_grad_norm_: c / (‖g‖ + 1e-6)
    assert clipped["W1"][0, 0] == 3.0 * scale and clipped["b1"][0] == 4.0 * scale
    clipped, _ = clip_by_global_norm(grads, 4.5)
    assert clipped["W1"][0, 0] == 3.0 * (4.5 / (5.0 + 1e-6))  # per tensor, neither would clip
    clipped, norm = clip_by_global_norm(grads, 6.0)  # under the threshold: unchanged
    assert norm == 5.0 and clipped["W1"][0, 0] == 3.0 and clipped["b1"][0] == 4.0


def test_a_clipping_step_reports_the_norm_before_clipping_and_the_unclipped_gradients():
    """dW stays the data loss's gradient (as PyTorch's .grad before clip_grad_norm_), L2
    is added after clipping, and grad_norm is in the trace only where the run clips."""
    mlp = MLP((3, 2, 1), "tanh", "identity", "mse")
    params = init_params(mlp, seed=0)
    X, Y = np.array([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]]), np.array([[4.0], [-3.0]])
    plain, clipping = (
        Optimizer("sgd", lr=0.1, l2=0.2),
        Optimizer("sgd", lr=0.1, l2=0.2, clip_norm=0.1),
    )
    trace, _, _ = train_step(mlp, plain, params, init_state(plain, params), X, Y)
    clipped, _, _ = train_step(mlp, clipping, params, init_state(clipping, params), X, Y)
    assert "grad_norm" not in trace
    norm = np.sqrt(sum(np.sum(trace[f"d{p}"] ** 2) for p in params))
    assert clipped["grad_norm"] == pytest.approx(norm, rel=1e-15) and norm > 0.1
    scale = 0.1 / (norm + 1e-6)
    for p in params:
        np.testing.assert_array_equal(clipped[f"d{p}"], trace[f"d{p}"])
        l2 = 0.2 * params[p] if p.startswith("W") else 0.0
        np.testing.assert_allclose(
            clipped[f"Δ{p}"], -0.1 * (scale * trace[f"d{p}"] + l2), rtol=1e-13, err_msg=p
        )


def test_update_leaves_the_old_parameters_and_state_alone():
    opt = Optimizer("adam", lr=0.1)
    params = {"W1": np.ones((2, 2)), "b1": np.zeros(2)}
    state = init_state(opt, params)
    grads = {p: np.ones_like(v) for p, v in params.items()}
    update(opt, params, grads, state)
    assert np.all(params["W1"] == 1) and np.all(state["adam_m_W1"] == 0) and state["t"] == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_update_keeps_the_dtype(name, dtype):
    opt = Optimizer(name, lr=0.1)
    params = {"W1": np.ones((2, 2), dtype=dtype), "b1": np.zeros(2, dtype=dtype)}
    new, state = update(opt, params, {p: v + 1 for p, v in params.items()}, init_state(opt, params))
    assert {v.dtype for v in new.values()} == {np.dtype(dtype)}
    assert {v.dtype for k, v in state.items() if k != "t"} <= {np.dtype(dtype)}


@pytest.mark.parametrize("name", ["sgd", "momentum", "adamw"])
def test_a_schedule_that_underflows_the_learning_rate_to_zero_steps_by_zero(name):
    # lr·γ^1 = 0.1·1e-200·… and lr·γ^2 = 1e-401 underflows to exactly 0: a valid schedule's
    # value, which update must take (no step at all, only the buffers move), not refuse
    opt = Optimizer(
        name, lr=0.1, lr_schedule="step", lr_step_size=1, lr_gamma=1e-200,
        weight_decay=0.01 if name == "adamw" else 0.0,
    )  # fmt: skip
    params = {"W1": np.array([[1.0]]), "b1": np.array([0.0])}
    state = init_state(opt, params)
    grads = {"W1": np.array([[0.5]]), "b1": np.array([0.5])}
    for _ in range(3):
        before = params
        params, state = update(opt, params, grads, state)
    assert state["t"] == 3
    assert params["W1"][0, 0] == before["W1"][0, 0]  # the third update's lr is 0
    assert params["b1"][0] == before["b1"][0]


# --- learning-rate schedules: learning_rate(opt, t), t = 1 for the first update -----------


def rates(opt: Optimizer, updates: int) -> list[float]:
    return [learning_rate(opt, t) for t in range(1, updates + 1)]


def test_a_constant_schedule_keeps_the_lr_at_every_update():
    assert rates(Optimizer(lr=0.3), 4) == [0.3] * 4


def test_a_step_schedule_multiplies_the_lr_by_gamma_every_step_size_updates():
    # lr·γ^⌊(t - 1)/s⌋ with lr = 0.8, γ = 0.5, s = 3: updates 1-3 at 0.8, 4-6 at 0.4, 7 at 0.2
    opt = Optimizer(lr=0.8, lr_schedule="step", lr_gamma=0.5, lr_step_size=3)
    assert rates(opt, 7) == [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2]


def cosine_by_hand(t: int, lr: float, lr_min: float, w: int, D: int) -> float:
    """The docstring's cosine, written out: k = t - 1; k < w: lr·(k + 1)/(w + 1); then
    lr_min + (lr - lr_min)·½(1 + cos(π·(k - w)/(D - w))), held at lr_min once k - w >= D - w."""
    k = t - 1
    if k < w:
        return lr * (k + 1) / (w + 1)
    return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * min(k - w, D - w) / (D - w)))


def test_a_cosine_schedule_warms_up_linearly_then_decays_to_lr_min_and_stays_there():
    # lr = 1, lr_min = 0.2, w = 3, D = 7: warm-up 1/4, 2/4, 3/4; the cosine starts at lr on
    # update 4 (k = w), is halfway, 0.6, on update 6, reaches 0.2 on update 8 and stays
    opt = Optimizer(lr=1.0, lr_schedule="cosine", lr_min=0.2, lr_warmup=3, lr_decay_steps=7)
    got = rates(opt, 10)
    assert got[:4] == [0.25, 0.5, 0.75, 1.0]
    assert got[5] == pytest.approx(0.6, abs=1e-15)
    assert got[7:] == [0.2, 0.2, 0.2]
    assert got == pytest.approx([cosine_by_hand(t, 1.0, 0.2, 3, 7) for t in range(1, 11)])
    assert got[4] == pytest.approx(0.2 + 0.4 * (1 + math.sqrt(0.5)), rel=1e-15)  # π/4


def test_the_rate_at_the_end_of_the_warm_up_is_lr_exactly():
    """Update w + 1 takes the configured lr, to the last bit (PyTorch's LinearLR ends on a
    factor of exactly 1): written as the warm-up's lr·(w + 1)/(w + 1) it would round
    (0.1·3/3 = 0.10000000000000002)."""
    opt = Optimizer(lr=0.1, lr_schedule="cosine", lr_warmup=2, lr_decay_steps=5)
    assert learning_rate(opt, 3) == 0.1


def test_a_cosine_schedule_without_warm_up_starts_at_lr():
    opt = Optimizer(lr=0.5, lr_schedule="cosine", lr_decay_steps=2)
    assert rates(opt, 3) == pytest.approx([0.5, 0.25, 0.0], abs=1e-16)


@pytest.mark.parametrize("warmup", [0, 2])
def test_a_cosine_schedule_refuses_a_length_not_above_its_warm_up(warmup):
    # lr_decay_steps = 0 is a run spec's "fill in the run's length"; learning_rate needs it
    opt = Optimizer(lr_schedule="cosine", lr_warmup=warmup, lr_decay_steps=0)
    message = (
        f"lr_decay_steps is 0: a cosine schedule needs its length in updates, above "
        f"lr_warmup ({warmup}) (a run spec's 0 is filled in with the run's length)"
    )
    with pytest.raises(ScratchInputError, match=exactly(message)):
        learning_rate(opt, 1)


def test_update_takes_the_lr_of_its_update_and_a_step_traces_it(rng):
    # step decay lr = 0.8, γ = 0.5, s = 1: update 1 at 0.8, update 2 at 0.4
    opt = Optimizer("sgd", lr=0.8, lr_schedule="step", lr_gamma=0.5, lr_step_size=1)
    history, _ = run(opt)
    assert [w for w, _ in history] == pytest.approx([1 - 0.8 * 0.5, 0.6 - 0.4 * 0.25], abs=1e-15)
    mlp = MLP((3, 2, 1), "tanh", "identity", "mse")
    params = init_params(mlp, seed=0)
    X, Y = rng.normal(size=(4, 3)).astype(np.float32), np.ones((4, 1), dtype=np.float32)
    params = {p: v.astype(np.float32) for p, v in params.items()}
    trace, _, _ = train_step(mlp, opt, params, {**init_state(opt, params), "t": 1}, X, Y)
    assert trace["lr"] == np.float32(0.4)
    assert trace["lr"].dtype == np.float32 and trace["lr"].shape == ()
    constant = Optimizer("sgd", lr=0.8)
    assert "lr" not in train_step(mlp, constant, params, init_state(constant, params), X, Y)[0]
