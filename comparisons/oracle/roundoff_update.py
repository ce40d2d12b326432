"""The allowances of an update: the clipping scale, the scheduled learning rate, each
optimizer's state and step, and the new parameters (``roundoff.py`` says how every allowance
is derived; this is its last stage, after the gradients)."""

from __future__ import annotations

import numpy as np

from comparisons.oracle.roundoff_terms import (
    Arrays,
    RoundoffSteps,
    gamma,
    library_term,
    matrices,
    totals,
)
from comparisons.oracle.tolerances import Roundoff
from scratch.config import Optimizer
from scratch.optimizers import CLIP_EPS
from scratch.trace_schema import parse, state_names


def _clipping(
    clip_norm: float, f64: Arrays, W: Arrays, E: Arrays, u: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The error of ‖g‖ = √S, S = Σ_p Σ g_p², and the scale s = min(1, c / (‖g‖ + 1e-6)) and
    its error, each (K, 1, 1). S is a sum of n squares (n every gradient element, in any
    order or grouping: PyTorch sums per tensor, then the tensors' norms): γ_n·S of its own,
    plus 2|g|·E_g carried in; √ halves a relative error and adds one rounding. s is the
    quotient's: its relative error is ‖g‖'s plus two roundings; min() is continuous, so at the
    threshold either side's value is honest, and well above it s is exactly 1."""
    grads = [f64[f"d{p}"] for p in W]
    n = sum(g[0].size for g in grads) + len(grads)
    S = sum(totals(g * g) for g in grads)
    E_S = sum(totals(2.0 * np.abs(g) * E[f"d{p}"]) for p, g in zip(W, grads, strict=True))
    E_S = E_S + gamma(n, u) * S
    norm = np.sqrt(S)
    with np.errstate(divide="ignore", invalid="ignore"):
        E_norm = np.where(norm > 0, E_S / (2.0 * norm), np.sqrt(E_S)) + u * norm
    ratio = clip_norm / (norm + CLIP_EPS)
    relative = E_norm / (norm + CLIP_EPS) + 2.0 * u
    scale = np.minimum(1.0, ratio)
    # where ratio is above 1 by more than its error, every engine's s is exactly 1
    E_scale = np.where(ratio * (1.0 - relative) > 1.0, 0.0, scale * relative)
    return E_norm, scale, E_scale


def _learning_rate(opt: Optimizer, t: np.ndarray, r: Roundoff) -> tuple[np.ndarray, np.ndarray]:
    """Each step's learning rate under the schedule (``t`` the update's count, (K, 1, 1)) and
    its error, in the run's dtype where an engine rounds the lr to it. step: lr·γ^n with
    n = ⌊(t - 1) / s⌋ is a power and a product in scratch and optax, and n products in
    PyTorch's StepLR (it multiplies the last lr by γ): n + 2 roundings and the power's few
    ulps."""
    k = (t - 1).astype(np.float64)  # updates before this one
    if opt.lr_schedule == "step":
        n = (t - 1) // opt.lr_step_size
        lr = opt.lr * opt.lr_gamma ** n.astype(np.float64)
        return lr, (n + r.library_ulps + 2) * r.unit * lr
    # cosine: PyTorch's LinearLR and CosineAnnealingLR each compute the next lr from the last
    # (a ratio of cosines, rounded each time), so their error grows by a few roundings of
    # the base lr per update; the closed forms (scratch, optax) are a few ulps of it
    w, D = opt.lr_warmup, opt.lr_decay_steps
    progress = np.clip(k - w, 0, D - w) / (D - w)
    cosine = opt.lr_min + (opt.lr - opt.lr_min) * 0.5 * (1.0 + np.cos(np.pi * progress))
    lr = np.where(k < w, opt.lr * (k + 1) / (w + 1), cosine)
    return lr, ((4.0 * k + 4) * r.unit + library_term(r, "cos")) * opt.lr


def update_errors(steps: RoundoffSteps, f64: Arrays, W: Arrays, E: Arrays, r: Roundoff) -> Arrays:
    """Errors of each parameter's update, optimizer state and new value, from its gradient's."""
    u, lib = r.unit, r.library_ulps * r.unit
    opt = steps.optimizer
    out: Arrays = {}
    t = (np.asarray(steps.t) + 1).reshape(-1, 1, 1)  # each step's count, as the rule uses it
    scale = E_scale = None
    if opt.clip_norm:
        out["grad_norm"], scale, E_scale = _clipping(opt.clip_norm, f64, W, E, u)
    lr, E_lr = opt.lr, 0.0
    if opt.lr_schedule != "constant":
        lr, E_lr = _learning_rate(opt, t, r)
        out["lr"] = E_lr
    for p, theta in W.items():
        g, E_g = f64[f"d{p}"], E[f"d{p}"]
        if scale is not None:  # g ← s·g: s's error reaches every element, and one rounding
            E_g = scale * E_g + np.abs(g) * E_scale + u * scale * np.abs(g)
            g = scale * g
        decays = parse(p).decays
        if opt.l2 and decays:
            E_g = E_g + u * (np.abs(g) + np.abs(opt.l2 * theta))
            g = g + opt.l2 * theta
        # decoupled decay: θ - lr·λ·θ, one rounding, and the lr's own error
        E_theta = (
            (u + E_lr * opt.weight_decay) * np.abs(theta) if (opt.weight_decay and decays) else 0.0
        )
        names = dict(zip(("first", "second"), state_names(opt.name, p), strict=False))
        old = {k: matrices(steps.state[n]) for k, n in names.items()}
        if opt.name == "sgd":
            E_step = E_g
            step_size = np.abs(g)
        elif opt.name in ("momentum", "nesterov"):
            v = opt.momentum * old["first"] + g
            E_v = E_g + u * (np.abs(opt.momentum * old["first"]) + np.abs(g))
            out[names["first"]] = E_v
            if opt.name == "momentum":
                E_step, step_size = E_v, np.abs(v)
            else:
                E_step = E_g + opt.momentum * E_v + u * (np.abs(g) + np.abs(opt.momentum * v))
                step_size = np.abs(g + opt.momentum * v)
        elif opt.name in ("adam", "adamw"):
            m = opt.beta1 * old["first"] + (1 - opt.beta1) * g
            v = opt.beta2 * old["second"] + (1 - opt.beta2) * g * g
            E_m = (1 - opt.beta1) * E_g + u * (np.abs(opt.beta1 * old["first"]) + np.abs(g))
            # g² is off by 2|g|·E_g + E_g²: the second-order term is all there is where g is
            # a cancellation to ~0 (a bias before batch normalization: 0 in one engine)
            E_v = (1 - opt.beta2) * (2.0 * np.abs(g) + E_g) * E_g + u * (
                opt.beta2 * old["second"] + v
            )
            out[names["first"]], out[names["second"]] = E_m, E_v
            c1, c2 = 1 - opt.beta1**t, 1 - opt.beta2**t
            m_hat, v_hat = m / c1, v / c2
            root = np.sqrt(v_hat)
            d = root + opt.eps
            with np.errstate(divide="ignore", invalid="ignore"):
                E_root = np.where(root > 0, E_v / c2 / (2.0 * root), np.sqrt(E_v / c2))
            # √'s measured error, and the sum's and the quotient's roundings
            root_lib = library_term(r, "sqrt") + 2.0 * u
            E_step = E_m / c1 / d + np.abs(m_hat) * E_root / d**2 + root_lib * np.abs(m_hat / d)
            step_size = np.abs(m_hat / d)
        elif opt.name == "rmsprop":  # v ← α·v + (1-α)·g²;  step g / (√v + ε)
            v = opt.alpha * old["first"] + (1 - opt.alpha) * g * g
            # g²'s error as Adam's v; the root halves v's relative error (or, at v ≈ 0 from a
            # cancelled g, is √E_v); the quotient is g/d (PyTorch) or g·(1/d) (optax): its
            # roundings and the root's are a library's few ulps
            E_v = (1 - opt.alpha) * (2.0 * np.abs(g) + E_g) * E_g + u * (
                opt.alpha * old["first"] + v
            )
            out[names["first"]] = E_v
            root = np.sqrt(v)
            d = root + opt.eps
            with np.errstate(divide="ignore", invalid="ignore"):
                E_root = np.where(root > 0, E_v / (2.0 * root), np.sqrt(E_v))
            root_lib = library_term(r, "sqrt") + 2.0 * u  # √'s measured error, two roundings
            E_step = E_g / d + np.abs(g) * E_root / d**2 + root_lib * np.abs(g / d)
            step_size = np.abs(g / d)
        else:
            raise ValueError(
                f"no roundoff rule for optimizer {opt.name!r}: add its update's error to "
                "comparisons/oracle/roundoff_update.py:update_errors"
            )
        E_update = lr * E_step + (lib * lr + E_lr) * step_size + E_theta
        new = f64[p]
        out[f"Δ{p}"] = E_update + u * (np.abs(new) + np.abs(f64[f"Δ{p}"]))
        out[p] = E_update + u * np.abs(new)
    out["t"] = np.zeros((1, 1, 1))  # an exact count
    return out
