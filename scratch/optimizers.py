"""Optimizers: one update rule per function, looked up by name (as the activations are).

Notation: θ a parameter (W_l or b_l), g its gradient from backprop, lr the learning rate,
t the step number counted from 1, μ the momentum, λ the weight decay. Every rule is
PyTorch's (``torch.optim``); optax computes the same (docs/numerics.md's conventions say
where textbooks write them differently). The state names are the trace's (``momentum``,
``adam_m``, ``adam_v``, ``rmsprop_v``; see ``trace_schema.py``).

    sgd        θ ← θ - lr·g
    momentum   v ← μ·v + g;           θ ← θ - lr·v
    nesterov   v ← μ·v + g;           θ ← θ - lr·(g + μ·v)
    adam       m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;
               m̂ = m / (1 - β1^t);   v̂ = v / (1 - β2^t);   θ ← θ - lr·m̂ / (√v̂ + ε)
    adamw      θ ← θ - lr·λ·θ (decoupled decay), then the adam step
    rmsprop    v ← α·v + (1-α)·g²;    θ ← θ - lr·g / (√v + ε)
               (PyTorch's RMSprop: ε outside the root, v starting at 0, α = 0.99 by
               default; not centered, without momentum. optax's rmsprop defaults differ —
               ε inside the root, decay 0.9 — and the JAX reference sets them to these.)

Weight decay in either form touches the weights W_l only, never the biases b_l. L2
regularization (``l2``, any optimizer but adamw) adds the gradient of (λ/2)·‖W‖² to the
weights' gradient before the rule sees it: g ← g + λ·W. The recorded loss and gradients
(``dW``) are those of the data loss alone, as PyTorch's ``.grad`` is.

Gradient clipping by global norm (``clip_norm`` c > 0) comes first, on those gradients, as
``torch.nn.utils.clip_grad_norm_`` between ``backward()`` and ``optimizer.step()``:

    ‖g‖ = √(Σ over every parameter p of Σ g_p²);   g_p ← g_p · min(1, c / (‖g‖ + 1e-6))

so L2 and decoupled decay are added to the clipped gradient (optax's ``clip_by_global_norm``
divides by ‖g‖ alone: docs/numerics.md's conventions).

A learning-rate schedule (``lr_schedule``) sets the lr of the t-th update from t alone
(``learning_rate``); every rule above, and the decoupled decay, takes the lr in effect.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import numpy as np

from scratch.config import Optimizer, ScratchInputError
from scratch.trace_schema import OPTIMIZER_STATE, parse, state_names

Params = dict[str, np.ndarray]
# A rule: (θ, g, the parameter's state before the step, settings, t) -> (θ_new, its state after)
Rule = Callable[[np.ndarray, np.ndarray, dict, Optimizer, int], tuple[np.ndarray, dict]]


def sgd(theta: np.ndarray, g: np.ndarray, state: dict, opt: Optimizer, t: int):
    """θ ← θ - lr·g"""
    return theta - opt.lr * g, {}


def momentum(theta: np.ndarray, g: np.ndarray, state: dict, opt: Optimizer, t: int):
    """v ← μ·v + g;  θ ← θ - lr·v"""
    v = opt.momentum * state["momentum"] + g
    return theta - opt.lr * v, {"momentum": v}


def nesterov(theta: np.ndarray, g: np.ndarray, state: dict, opt: Optimizer, t: int):
    """v ← μ·v + g;  θ ← θ - lr·(g + μ·v)"""
    v = opt.momentum * state["momentum"] + g
    return theta - opt.lr * (g + opt.momentum * v), {"momentum": v}


def adam(theta: np.ndarray, g: np.ndarray, state: dict, opt: Optimizer, t: int):
    """m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  θ ← θ - lr·m̂ / (√v̂ + ε),
    with the bias corrections m̂ = m / (1 - β1^t), v̂ = v / (1 - β2^t)."""
    m = opt.beta1 * state["adam_m"] + (1 - opt.beta1) * g
    v = opt.beta2 * state["adam_v"] + (1 - opt.beta2) * g * g
    m_hat = m / (1 - opt.beta1**t)
    v_hat = v / (1 - opt.beta2**t)
    return theta - opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps), {"adam_m": m, "adam_v": v}


def rmsprop(theta: np.ndarray, g: np.ndarray, state: dict, opt: Optimizer, t: int):
    """v ← α·v + (1-α)·g²;  θ ← θ - lr·g / (√v + ε)   (no bias correction: t is not read)."""
    v = opt.alpha * state["rmsprop_v"] + (1 - opt.alpha) * g * g
    return theta - opt.lr * g / (np.sqrt(v) + opt.eps), {"rmsprop_v": v}


def learning_rate(opt: Optimizer, t: int) -> float:
    """The learning rate of the t-th update (t = 1 for the first):

    constant   lr
    step       lr·γ^⌊(t - 1) / s⌋   (γ = lr_gamma, s = lr_step_size): the first s updates
               use lr, the next s lr·γ, … (PyTorch's StepLR stepped after every update;
               optax's exponential_decay with staircase, at the count of updates done)
    cosine     with k = t - 1, w = lr_warmup, D = lr_decay_steps:
               k < w    lr·(k + 1)/(w + 1)                      (linear warm-up)
               k >= w   lr_min + (lr - lr_min)·½(1 + cos(π·(k - w)/(D - w)))
               (PyTorch's SequentialLR of LinearLR(1/(w + 1)) and CosineAnnealingLR(D - w);
               optax's join_schedules of linear_schedule and cosine_decay_schedule.) The
               run fills in D as its number of updates; past D the rate stays at lr_min
               here and in optax, while PyTorch's cosine would rise again: the spec refuses
               a D shorter than the run.
    """
    if opt.lr_schedule == "step":
        return opt.lr * opt.lr_gamma ** ((t - 1) // opt.lr_step_size)
    if opt.lr_schedule == "cosine":
        k, w, D = t - 1, opt.lr_warmup, opt.lr_decay_steps
        if D <= w:
            raise ScratchInputError(
                f"lr_decay_steps is {D}: a cosine schedule needs its length in updates, above "
                f"lr_warmup ({w}) (a run spec's 0 is filled in with the run's length)"
            )
        if k < w:  # linear warm-up: lr/(w + 1), 2·lr/(w + 1), …, reaching lr at k = w
            return opt.lr * (k + 1) / (w + 1)
        progress = min(k - w, D - w) / (D - w)  # 0 … 1 over the cosine, then held
        return opt.lr_min + (opt.lr - opt.lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return opt.lr


# PyTorch's clip_grad_norm_ divides by the norm plus this (optax's clip_by_global_norm does not).
CLIP_EPS = 1e-6


def clip_by_global_norm(grads: Params, clip_norm: float) -> tuple[Params, np.ndarray]:
    """(the clipped gradients, ‖g‖ before clipping):

    ‖g‖ = √(Σ_p Σ g_p²)   over every parameter's gradient together (one global norm, not
    one per tensor);  s = min(1, c / (‖g‖ + 1e-6));  g_p ← s·g_p.
    """
    norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
    scale = min(1.0, clip_norm / (norm + CLIP_EPS))
    return {p: g * scale for p, g in grads.items()}, norm


# adamw is adam's rule after the decoupled decay, which ``update`` applies to the weights.
RULES: dict[str, Rule] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adam": adam,
    "adamw": adam,
    "rmsprop": rmsprop,
}


def init_state(opt: Optimizer, params: Params) -> dict:
    """Zero buffers for every parameter, and the step counter t = 0. A batch-normalized
    layer (a ``gammal`` among the parameters) also starts its running statistics: mean 0,
    variance 1 (PyTorch's BatchNorm1d's)."""
    state: dict = {"t": 0}
    for p, theta in params.items():
        for name in state_names(opt.name, p):
            state[name] = np.zeros_like(theta)
    for p, theta in params.items():
        if p.startswith("gamma"):
            l = p.removeprefix("gamma")
            state[f"running_mean{l}"] = np.zeros_like(theta)
            state[f"running_var{l}"] = np.ones_like(theta)
    return state


def update(opt: Optimizer, params: Params, grads: Params, state: dict) -> tuple[Params, dict]:
    """One step: new parameters and new state from the gradients ``grads[p]`` (= dθ).

    Nothing is changed in place: the old parameters and state stay valid.
    """
    t = state["t"] + 1
    if opt.lr_schedule != "constant":  # the rules read the lr in effect at this update
        opt = _in_effect(opt, learning_rate(opt, t))
    rule = RULES[opt.name]
    new_params: Params = {}
    new_state: dict = {"t": t}
    for p, decays, names in _layout(opt.name, tuple(params)):
        theta, g = params[p], grads[p]
        if opt.l2 and decays:
            g = g + opt.l2 * theta  # L2 regularization: ∂/∂W of (λ/2)·‖W‖²
        if opt.weight_decay and decays:
            theta = theta - opt.lr * opt.weight_decay * theta  # decoupled decay (adamw)
        theta, after = rule(theta, g, {s: state[n] for s, n in names.items()}, opt, t)
        new_params[p] = theta
        new_state.update({n: after[s] for s, n in names.items()})
    return new_params, new_state


def _in_effect(opt: Optimizer, lr: float) -> Optimizer:
    """``opt`` with the scheduled ``lr`` as a constant rate. The settings were checked when
    ``opt`` was made; the schedule's value is not checked again: a step decay may underflow
    to exactly 0, which is legitimate (that update moves nothing), though lr = 0 is no
    valid setting."""
    scheduled = copy.copy(opt)
    object.__setattr__(scheduled, "lr", lr)  # a frozen dataclass: a copy, set without a check
    object.__setattr__(scheduled, "lr_schedule", "constant")
    return scheduled


@functools.lru_cache(maxsize=64)
def _layout(optimizer: str, params: tuple[str, ...]) -> list[tuple[str, bool, dict]]:
    """Per parameter: its name, whether weight decay touches it, and its state's names
    (``{"adam_m": "adam_m_W1", …}``): looked up once, not at every step."""
    kept = OPTIMIZER_STATE[optimizer]
    return [
        (p, parse(p).decays, dict(zip(kept, state_names(optimizer, p), strict=True)))
        for p in params
    ]
