"""The faults of what the plain MLP lacks: gradient clipping, learning-rate schedules, dropout
and batch normalization (part of the catalogue: ``catalogue.py`` says what a fault is).

Each runs on the fast oracle's problem (``FAST_SPEC``) with its option turned on.
"""

from __future__ import annotations

from comparisons.faults.fault import NET, OPT, Fault
from comparisons.faults.patching import edit

CLIP_SPEC = {"clip_norm": 0.5}  # the first step's global norm is 0.70: it clips
# decays at the third and the fifth of the six updates
SCHEDULE_SPEC = {"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": 0.5}
# two warm-up updates, then a cosine over the other four of the six, down to 0.01
COSINE_SPEC = {"lr_schedule": "cosine", "lr_warmup": 2, "lr_min": 0.01}
DROPOUT_SPEC = {"dropout": 0.3}  # the first step drops 9 of 30 units of layer 1, 5 of 25 of 2
BN_SPEC = {"batch_norm": True}

OPTION_FAULTS = (
    # Gradient clipping by global norm.
    Fault(
        "clip-per-tensor",
        "optimizer",
        "each gradient clipped by its own norm instead of the norm of all of them together",
        edit(
            OPT,
            "clip_by_global_norm",
            "g * scale for p, g",
            "g * min(1.0, clip_norm / (np.sqrt(np.sum(g * g)) + CLIP_EPS)) for p, g",
        ),
        "ΔW1",
        CLIP_SPEC,
    ),
    Fault(
        "clip-norm-squared",
        "optimizer",
        "the global norm without its square root: Σ g² taken for ‖g‖",
        edit(OPT, "clip_by_global_norm", "np.sqrt(sum(", "(sum("),
        "grad_norm",
        CLIP_SPEC,
    ),
    Fault(
        "clip-without-eps",
        "optimizer",
        "the clipping scale c / ‖g‖ (optax's clip_by_global_norm) in a run that follows "
        "PyTorch's c / (‖g‖ + 1e-6)",
        edit(OPT, "clip_by_global_norm", "clip_norm / (norm + CLIP_EPS)", "clip_norm / norm"),
        "ΔW1",
        CLIP_SPEC,
    ),
    # Learning-rate schedules.
    Fault(
        "schedule-one-step-late",
        "optimizer",
        "the step-decay schedule one update late: lr·γ^⌊t / s⌋ for the t-th update",
        edit(OPT, "learning_rate", "((t - 1) // opt.lr_step_size)", "(t // opt.lr_step_size)"),
        "lr",
        SCHEDULE_SPEC,
    ),
    Fault(
        "schedule-decays-every-update",
        "optimizer",
        "the learning rate multiplied by γ at every update instead of every s updates",
        edit(OPT, "learning_rate", "((t - 1) // opt.lr_step_size)", "(t - 1)"),
        "lr",
        SCHEDULE_SPEC,
    ),
    Fault(
        "schedule-not-applied",
        "optimizer",
        "the schedule's lr reported but the update taken with the base lr",
        edit(OPT, "update", "_in_effect(opt, learning_rate(opt, t))", "_in_effect(opt, opt.lr)"),
        "ΔW1",
        SCHEDULE_SPEC,
    ),
    Fault(
        "warmup-one-update-short",
        "optimizer",
        "the warm-up divides by w instead of w + 1: it reaches lr one update early",
        edit(OPT, "learning_rate", "opt.lr * (k + 1) / (w + 1)", "opt.lr * (k + 1) / w"),
        "lr",
        COSINE_SPEC,
    ),
    Fault(
        "cosine-ignores-warmup",
        "optimizer",
        "the cosine's progress counted from the first update instead of the warm-up's end",
        edit(OPT, "learning_rate", "min(k - w, D - w)", "min(k, D - w)"),
        "lr",
        COSINE_SPEC,
    ),
    Fault(
        "cosine-without-floor",
        "optimizer",
        "the cosine decays to 0 instead of lr_min: lr·½(1 + cos(…))",
        edit(
            OPT,
            "learning_rate",
            "opt.lr_min + (opt.lr - opt.lr_min) * 0.5",
            "opt.lr * 0.5",
        ),
        "lr",
        COSINE_SPEC,
    ),
    # Dropout.
    Fault(
        "dropout-not-inverted",
        "dropout",
        "the kept units not scaled by 1/(1 - p) in training (the scaling left to evaluation, "
        "as in the original dropout, while the network is evaluated without it)",
        edit(NET, "dropout", "A * M / (1.0 - p)", "A * M"),
        "D1",
        DROPOUT_SPEC,
    ),
    Fault(
        "dropout-divides-by-rate",
        "dropout",
        "the kept units scaled by 1/p, the drop rate taken for the keep probability",
        edit(NET, "dropout", "A * M / (1.0 - p)", "A * M / p"),
        "D1",
        DROPOUT_SPEC,
    ),
    Fault(
        "mask-keeps-with-rate",
        "dropout",
        "each unit kept with probability p instead of 1 - p (U < p keeps it)",
        edit(NET, "dropout_masks", ">= mlp.dropout", "< mlp.dropout"),
        "M1",
        DROPOUT_SPEC,
    ),
    Fault(
        "one-mask-for-the-batch",
        "dropout",
        "one mask row drawn per layer and shared by every example of the batch",
        edit(
            NET,
            "dropout_masks",
            "rng.random((batch, mlp.sizes[l]))",
            "rng.random((1, mlp.sizes[l])).repeat(batch, axis=0)",
        ),
        "M1",
        DROPOUT_SPEC,
    ),
    Fault(
        "mask-redrawn-in-backward",
        "dropout",
        "the backward pass draws a fresh mask instead of reusing the forward pass's",
        edit(
            NET,
            "backward",
            'mask = fwd.get(f"M{l - 1}")',
            'mask = dropout_masks(mlp, len(X), 1, l).get(f"M{l - 1}") if fwd.get(f"M{l - 1}") '
            "is not None else None",
        ),
        "dZ2",
        DROPOUT_SPEC,
    ),
    Fault(
        "dropout-backward-without-mask",
        "dropout",
        "the error goes back through dropout scaled by 1/(1 - p) but not masked: dropped "
        "units pass it on",
        edit(NET, "dropout_backward", "dD * M / (1.0 - p)", "dD / (1.0 - p)"),
        "dZ2",
        DROPOUT_SPEC,
    ),
    Fault(
        "dropout-backward-unscaled",
        "dropout",
        "the error goes back through the mask without the forward pass's 1/(1 - p)",
        edit(NET, "dropout_backward", "dD * M / (1.0 - p)", "dD * M"),
        "dZ2",
        DROPOUT_SPEC,
    ),
    Fault(
        "derivative-at-dropped-output",
        "dropout",
        "g'(Z_l) computed from the dropped-out output D_l instead of the activation A_l",
        edit(NET, "backward", 'fwd[f"A{l - 1}"],', "layer_output(fwd, X, l - 1),"),
        "dZ2",
        DROPOUT_SPEC,
    ),
    Fault(
        "weight-grad-reads-activation",
        "dropout",
        "dW_{l+1} = A_l.T @ dZ_{l+1}: the activation before dropout instead of D_l",
        edit(
            NET,
            "layer_output",
            'return fwd[f"D{l}"] if f"D{l}" in fwd else fwd[f"A{l}"]',
            'return fwd[f"A{l}"]',
        ),
        "dW3",
        DROPOUT_SPEC,
    ),
    # Batch normalization.
    Fault(
        "bn-unbiased-variance",
        "batch_norm",
        "the forward pass normalizes with the unbiased variance, Σ(Z - μ)²/(B - 1)",
        edit(
            NET,
            "batch_norm",
            "((Z - mu) ** 2).mean(axis=0)",
            "((Z - mu) ** 2).sum(axis=0) / (len(Z) - 1)",
        ),
        "var1",
        BN_SPEC,
    ),
    Fault(
        "bn-eps-outside-sqrt",
        "batch_norm",
        "ε added outside the square root: (Z - μ)/(√σ² + ε)",
        edit(NET, "batch_norm", "np.sqrt(var + eps)", "(np.sqrt(var) + eps)"),
        "xhat1",
        BN_SPEC,
    ),
    Fault(
        "bn-running-momentum-swapped",
        "batch_norm",
        "the running statistics weigh the old value by m and the batch's by 1 - m (flax's and "
        "Keras's momentum convention in a run that follows PyTorch's)",
        edit(
            NET,
            "running_stats",
            "return (1 - m) * mean + m * mu, (1 - m) * var + m * var_B * (B / (B - 1))",
            "return m * mean + (1 - m) * mu, m * var + (1 - m) * var_B * (B / (B - 1))",
        ),
        "running_mean1",
        BN_SPEC,
    ),
    Fault(
        "bn-running-variance-biased",
        "batch_norm",
        "the running variance kept biased (the batch's σ², not σ²·B/(B - 1))",
        edit(NET, "running_stats", "m * var_B * (B / (B - 1))", "m * var_B"),
        "running_var1",
        BN_SPEC,
    ),
    Fault(
        "bn-variance-gradient-without-1-over-B",
        "batch_norm",
        "the variance's path of dZ without its 1/B: dσ²·2(Z - μ) instead of dσ²·2(Z - μ)/B",
        edit(NET, "batch_norm_backward", "dvar * 2.0 * centered / B", "dvar * 2.0 * centered"),
        "dZ2",
        BN_SPEC,
    ),
    Fault(
        "bn-mean-path-dropped",
        "batch_norm",
        "dZ without the mean's path, dμ/B (as if μ were a constant)",
        edit(NET, "batch_norm_backward", " + dmu / B", ""),
        "dZ2",
        BN_SPEC,
    ),
    Fault(
        "bn-gamma-gradient-from-output",
        "batch_norm",
        "dγ = Σ dN ⊙ N, the scaled output, instead of Σ dN ⊙ x̂",
        edit(
            NET, "batch_norm_backward", '"dgamma": (dN * xhat)', '"dgamma": (dN * (gamma * xhat))'
        ),
        "dgamma2",
        BN_SPEC,
    ),
)
