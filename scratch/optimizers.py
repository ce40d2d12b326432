"""Optimizers, each an ``init`` of its state and an ``update`` of parameters and state.

Notation: θ a parameter (W_l or b_l), g its gradient from backprop, lr the learning rate,
t the step number counted from 1, μ the momentum, λ the weight decay. All formulas are
PyTorch's (``torch.optim``); optax computes the same ones (see the README's conventions
table for where textbooks write them differently).

Weight decay in either form touches the weights W_l only, never the biases b_l.

    sgd        θ ← θ - lr·g
    momentum   v ← μ·v + g;           θ ← θ - lr·v
    nesterov   v ← μ·v + g;           θ ← θ - lr·(g + μ·v)
    adam       m ← β1·m + (1-β1)·g;  s ← β2·s + (1-β2)·g²;
               m̂ = m / (1 - β1^t);   ŝ = s / (1 - β2^t);   θ ← θ - lr·m̂ / (√ŝ + ε)
    adamw      θ ← θ - lr·λ·θ (decoupled decay, weights only), then the adam step

L2 regularization (``l2``, any optimizer but adamw) adds the gradient of (λ/2)·‖W‖² to
the weights' gradient before the optimizer sees it: g ← g + λ·W. The recorded loss and
gradients (``dW``) are those of the data loss alone, as PyTorch's ``.grad`` is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class Optimizer:
    """An optimizer's name and hyperparameters (those of the other optimizers are ignored)."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    l2: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        for field in ("momentum", "beta1", "beta2"):
            if not 0 <= getattr(self, field) < 1:
                raise ValueError(f"{field} must be in [0, 1); got {getattr(self, field)}")
        if not self.eps > 0 or self.l2 < 0 or self.weight_decay < 0:
            raise ValueError("eps must be > 0, and l2 and weight_decay >= 0")
        if self.name == "adamw" and self.l2:
            raise ValueError("adamw takes decoupled weight_decay, not l2; set l2 = 0")
        if self.name != "adamw" and self.weight_decay:
            raise ValueError(
                f"weight_decay (decoupled) is for adamw; "
                f"use l2 for L2 regularization with {self.name}"
            )

    def state_names(self, param: str) -> tuple[str, ...]:
        """The optimizer-state tensors kept for parameter ``param``, as the trace names them."""
        if self.name in ("momentum", "nesterov"):
            return (f"momentum_{param}",)
        if self.name in ("adam", "adamw"):
            return (f"adam_m_{param}", f"adam_v_{param}")
        return ()


def is_weight(param: str) -> bool:
    """Weight decay applies to W_l, not to b_l."""
    return param.startswith("W")


def init_state(opt: Optimizer, params: Params) -> dict:
    """Zero buffers for every parameter, and the step counter t = 0."""
    state: dict = {"step": 0}
    for p, theta in params.items():
        for name in opt.state_names(p):
            state[name] = np.zeros_like(theta)
    return state


def update(opt: Optimizer, params: Params, grads: Params, state: dict) -> tuple[Params, dict]:
    """One step: new parameters and new state from the gradients ``grads[p]`` (= dθ).

    Nothing is changed in place: the old parameters and state stay valid.
    """
    t = state["step"] + 1
    new_params: Params = {}
    new_state: dict = {"step": t}
    for p, theta in params.items():
        g = grads[p]
        if opt.l2 and is_weight(p):
            g = g + opt.l2 * theta  # L2 regularization: ∂/∂W of (λ/2)·‖W‖²
        if opt.name == "sgd":
            theta = theta - opt.lr * g
        elif opt.name in ("momentum", "nesterov"):
            v = opt.momentum * state[f"momentum_{p}"] + g
            step = g + opt.momentum * v if opt.name == "nesterov" else v
            theta = theta - opt.lr * step
            new_state[f"momentum_{p}"] = v
        else:  # adam, adamw
            if opt.name == "adamw" and is_weight(p):
                theta = theta - opt.lr * opt.weight_decay * theta
            m = opt.beta1 * state[f"adam_m_{p}"] + (1 - opt.beta1) * g
            s = opt.beta2 * state[f"adam_v_{p}"] + (1 - opt.beta2) * g * g
            m_hat = m / (1 - opt.beta1**t)
            s_hat = s / (1 - opt.beta2**t)
            theta = theta - opt.lr * m_hat / (np.sqrt(s_hat) + opt.eps)
            new_state[f"adam_m_{p}"], new_state[f"adam_v_{p}"] = m, s
        new_params[p] = theta
    return new_params, new_state
