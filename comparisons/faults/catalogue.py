"""A catalogue of real backprop bugs, applied to scratch in memory, to prove the oracle.

Each fault is a context manager that patches scratch while it is active — by recompiling one
function from its source with one edit (``patching.py``), or swapping a constant — and
restores everything on exit. Files on disk are never touched.

Every fault names the tensor its bug first touches, in dataflow order, under its run spec
(``FAST_SPEC`` plus the fault's changes): that is where the oracle's first divergence must
point for the fault to count as localized. A fault that cannot change behaviour is marked
``equivalent``, and a test proves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

import scratch.activations
import scratch.losses
import scratch.network
import scratch.optimizers
import scratch.training
from comparisons.faults.patching import edit

# The fast oracle's problem: 12 synthetic rows, batches of 5 (the last one has 2 rows), two
# epochs, network (4, 6, 5, 1). Small enough that the whole catalogue runs in seconds.
FAST_SPEC = {
    "dataset": "synthetic",
    "synthetic_rows": 12,
    "synthetic_features": 4,
    "hidden": (6, 5),
    "activation": "sigmoid",
    "loss": "bce_logits",
    "output": "identity",
    "optimizer": "sgd",
    "lr": 0.1,
    "epochs": 2,
    "batch_size": 5,
}


@dataclass(frozen=True)
class Fault:
    name: str
    category: str  # activation, loss, backward, optimizer, dropout, batch_norm, data, precision
    description: str
    patch: Callable[[], contextlib.AbstractContextManager]
    expected_tensor: str  # the first tensor, in dataflow order, that the fault changes
    spec: dict = field(default_factory=dict)  # run-spec changes under which the fault shows
    equivalent: bool = False  # cannot change behaviour (a test proves it)
    location: str = ""  # the function the fault breaks, where ``patch`` cannot say

    def run_spec(self) -> dict:
        return {**FAST_SPEC, **self.spec}

    @property
    def where(self) -> str:
        """``scratch/<module>.py:<function>``: the function the fault breaks."""
        return getattr(self.patch, "where", self.location)


ACT = scratch.activations
LOSS = scratch.losses
NET = scratch.network
TRAIN = scratch.training
OPT = scratch.optimizers
MOMENTUM = 'opt.momentum * state["momentum"] + g'
MOMENTUM_SPEC = {"optimizer": "momentum", "lr": 0.02, "momentum": 0.9}
ADAM_SPEC = {"optimizer": "adam", "lr": 0.01}
IN_PLACE_SGD = "theta -= opt.lr * g\n    return theta, {}"
CLIP_SPEC = {"clip_norm": 0.5}  # the first step's global norm is 0.70: it clips
# decays at the third and the fifth of the six updates
SCHEDULE_SPEC = {"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": 0.5}
# two warm-up updates, then a cosine over the other four of the six, down to 0.01
COSINE_SPEC = {"lr_schedule": "cosine", "lr_warmup": 2, "lr_min": 0.01}
DROPOUT_SPEC = {"dropout": 0.3}
BN_SPEC = {"batch_norm": True}  # the first step drops 9 of 30 units of layer 1, 5 of 25 of 2

FAULTS = (
    # Activations: the derivative's sign or form.
    Fault(
        "sigmoid-derivative-sign",
        "activation",
        "sigmoid' = -A(1 - A): the sign of an activation derivative",
        edit(ACT, "sigmoid_derivative", "A * (1.0 - A)", "-A * (1.0 - A)"),
        "dZ2",
    ),
    Fault(
        "sigmoid-derivative-from-Z",
        "activation",
        "sigmoid' = Z(1 - Z): the derivative computed from Z instead of A",
        edit(ACT, "sigmoid_derivative", "A * (1.0 - A)", "Z * (1.0 - Z)"),
        "dZ2",
    ),
    Fault(
        "tanh-derivative-form",
        "activation",
        "tanh' = 1 - A instead of 1 - A²",
        edit(ACT, "tanh_derivative", "1.0 - A * A", "1.0 - A"),
        "dZ2",
        {"activation": "tanh"},
    ),
    Fault(
        "leaky-relu-derivative-slope",
        "activation",
        "leaky_relu' = 0.1 on the negative side instead of the forward pass's 0.01",
        edit(ACT, "leaky_relu_derivative", "LEAKY_RELU_SLOPE).astype", "0.1).astype"),
        "dZ2",
        {"activation": "leaky_relu"},
    ),
    # Losses: the 1/m of the mean, and the loss's own gradient.
    Fault(
        "missing-1/m",
        "loss",
        "bce_logits' gradient without the 1/B of the mean",
        edit(LOSS, "bce_logits", "(sigmoid(A) - Y) / A.size", "(sigmoid(A) - Y)"),
        "dZ3",
    ),
    Fault(
        "doubled-1/m",
        "loss",
        "bce_logits' gradient divided by B twice",
        edit(LOSS, "bce_logits", "/ A.size", "/ A.size / A.shape[0]"),
        "dZ3",
    ),
    Fault(
        "nominal-batch-size",
        "loss",
        "the mean divides by the nominal batch size (5), wrong on the partial last batch only",
        edit(LOSS, "bce_logits", "/ A.size", "/ (5 * A.shape[1])"),
        "dZ3",
    ),
    Fault(
        "mse-gradient-without-2",
        "loss",
        "∂/∂A of (A - Y)² taken as (A - Y): the 2 dropped",
        edit(LOSS, "mse", "2.0 * diff / diff.size", "diff / diff.size"),
        "dZ3",
        {"loss": "mse"},
    ),
    Fault(
        "bce-clip-bound",
        "loss",
        "BCE clamps log at -10 instead of PyTorch's -100 (shows on saturated outputs)",
        lambda: mock.patch.object(scratch.losses, "BCE_LOG_FLOOR", -10.0),
        "loss",
        # Gain 15: enough saturated outputs that some log terms fall below -10, few so
        # saturated (|Z| > 25) that A(1 - A) itself loses its digits in float64.
        {"loss": "bce", "output": "sigmoid", "init_gain": 15.0},
        location="scratch/losses.py:bce",
    ),
    Fault(
        "softmax-without-max",
        "loss",
        "softmax cross-entropy without subtracting the row max: overflows on large logits",
        edit(
            LOSS,
            "softmax_cross_entropy",
            "shifted = A - A.max(axis=1, keepdims=True)",
            "shifted = A",
        ),
        "loss",
        {
            "loss": "softmax_cross_entropy",
            "synthetic_classes": 3,
            "dtype": "float32",
            "init_gain": 300.0,  # logits in the hundreds: exp overflows float32 above ~88.7
        },
    ),
    # The backward pass.
    Fault(
        "transposed-weight-in-error-term",
        "backward",
        "dZ_l = (dZ_{l+1} @ W_{l+1}) * g'(Z_l): W where W.T belongs (reshaped to fit)",
        edit(NET, "hidden_error", "W_next.T", "W_next.reshape(W_next.shape[::-1])"),
        "dZ1",
        {"hidden": (4, 4)},  # W2 square: the reshape is W2 itself, not its transpose
    ),
    Fault(
        "error-term-without-derivative",
        "backward",
        "dZ_l = dZ_{l+1} @ W_{l+1}.T: the error term not multiplied by g'(Z_l)",
        edit(
            NET,
            "hidden_error",
            "return dA * get_activation(act).derivative(Z, A)",
            "return dA",
        ),
        "dZ2",
    ),
    Fault(
        "off-by-one-layer",
        "backward",
        "dZ_{l-1} uses layer l's activation derivative: an off-by-one layer index",
        edit(NET, "backward", "mlp.activation_of(l - 1)", "mlp.activation_of(l)"),
        "dZ2",
    ),
    Fault(
        "bias-gradient-one-row",
        "backward",
        "db_l = dZ_l[0]: one row of the batch instead of the sum",
        edit(NET, "bias_grad", "dZ.sum(axis=0)", "dZ[0]"),
        "db3",
    ),
    Fault(
        "bias-gradient-mean",
        "backward",
        "db_l = mean over the batch of dZ_l: the 1/B applied a second time",
        edit(NET, "bias_grad", "dZ.sum(axis=0)", "dZ.mean(axis=0)"),
        "db3",
    ),
    Fault(
        "bias-gradient-wrong-axis",
        "backward",
        "db_l = Σ over the units instead of the batch: a shape the update cannot broadcast (a "
        "crash inside the step, which the oracle turns into a verdict)",
        edit(NET, "bias_grad", "dZ.sum(axis=0)", "dZ.sum(axis=1)"),
        "db3",
    ),
    # Optimizers.
    Fault(
        "update-in-place",
        "optimizer",
        "θ -= lr·g: the update writes into the parameter it was given (the caller's array)",
        edit(
            OPT, "sgd", "return theta - opt.lr * g, {}", "theta -= opt.lr * g\n    return theta, {}"
        ),
        "W1",
    ),
    Fault(
        "adam-step-count-not-advanced",
        "optimizer",
        "Adam's step count t is used but not stored: every step is bias-corrected as the first",
        edit(OPT, "update", 'new_state: dict = {"t": t}', 'new_state: dict = {"t": state["t"]}'),
        "t",
        ADAM_SPEC,
    ),
    Fault(
        "update-sign",
        "optimizer",
        "θ ← θ + lr·g: the update's sign",
        edit(OPT, "sgd", "theta - opt.lr * g", "theta + opt.lr * g"),
        "ΔW1",
    ),
    Fault(
        "lr-applied-twice",
        "optimizer",
        "θ ← θ - lr·lr·g: the learning rate applied twice",
        edit(OPT, "sgd", "theta - opt.lr * g", "theta - opt.lr * opt.lr * g"),
        "ΔW1",
    ),
    Fault(
        "momentum-buffer-not-updated",
        "optimizer",
        "the momentum buffer keeps its old value after the step",
        edit(OPT, "momentum", '{"momentum": v}', '{"momentum": state["momentum"]}'),
        "momentum_W1",
        MOMENTUM_SPEC,
    ),
    Fault(
        "momentum-sign",
        "optimizer",
        "v ← μ·v - g: the sign of the momentum update",
        edit(OPT, "momentum", MOMENTUM, MOMENTUM.replace("+ g", "- g")),
        "ΔW1",
        MOMENTUM_SPEC,
    ),
    Fault(
        "nesterov-as-momentum",
        "optimizer",
        "Nesterov's step taken as plain momentum's: θ ← θ - lr·v",
        edit(OPT, "nesterov", "opt.lr * (g + opt.momentum * v)", "opt.lr * v"),
        "ΔW1",
        {**MOMENTUM_SPEC, "optimizer": "nesterov"},
    ),
    Fault(
        "adam-no-bias-correction",
        "optimizer",
        "Adam without the bias correction of the first moment: m̂ = m",
        edit(OPT, "adam", "m_hat = m / (1 - opt.beta1**t)", "m_hat = m"),
        "ΔW1",
        ADAM_SPEC,
    ),
    Fault(
        "adam-bias-correction-step",
        "optimizer",
        "Adam's second-moment correction with the step count off by one: 1 - β2^(t+1)",
        edit(OPT, "adam", "(1 - opt.beta2**t)", "(1 - opt.beta2 ** (t + 1))"),
        "ΔW1",
        ADAM_SPEC,
    ),
    Fault(
        "adam-eps-inside-sqrt",
        "optimizer",
        "Adam's ε inside the square root: m̂/√(v̂ + ε)",
        edit(OPT, "adam", "(np.sqrt(v_hat) + opt.eps)", "np.sqrt(v_hat + opt.eps)"),
        "ΔW1",
        ADAM_SPEC,
    ),
    Fault(
        "weight-decay-on-biases",
        "optimizer",
        "AdamW's decoupled decay applied to the biases too",
        edit(OPT, "update", "if opt.weight_decay and decays:", "if opt.weight_decay:"),
        "Δb1",
        {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05},
    ),
    Fault(
        "l2-as-decoupled",
        "optimizer",
        "Adam's L2 regularization applied as decoupled decay: L2 and decoupled swapped",
        edit(OPT, "update", "g = g + opt.l2 * theta", "theta = theta - opt.lr * opt.l2 * theta"),
        "ΔW1",
        {**ADAM_SPEC, "l2": 0.05},
    ),
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
        edit(OPT, "update", "lr=learning_rate(opt, t), ", ""),
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
    # Data handling inside scratch.
    Fault(
        "shuffle-x-not-y",
        "data",
        "the batch's rows of X are shuffled but Y's are taken in sorted order",
        edit(TRAIN, "minibatch", "return X[rows], Y[rows]", "return X[rows], Y[np.sort(rows)]"),
        "Y",
    ),
    Fault(
        "partial-batch-dropped",
        "data",
        "the last partial batch of each epoch silently dropped",
        edit(
            TRAIN,
            "epoch_batches",
            "len(order) - batch_size + 1 if drop_last else len(order)",
            "len(order) - batch_size + 1",
        ),
        "rows",
    ),
    Fault(
        "extra-batch",
        "data",
        "one batch too many in each epoch (an empty one past the end)",
        edit(
            TRAIN,
            "epoch_batches",
            "range(0, last_start, batch_size)",
            "range(0, last_start + batch_size, batch_size)",
        ),
        "rows",
    ),
    # Precision.
    Fault(
        "float32-accumulation",
        "precision",
        "dW = A.T @ dZ accumulated in float32 inside a float64 run (cast back after)",
        edit(
            NET,
            "weight_grad",
            "A_prev.T @ dZ",
            "(A_prev.T.astype(np.float32) @ dZ.astype(np.float32)).astype(dZ.dtype)",
        ),
        "dW3",
    ),
    # Equivalent: cannot change behaviour.
    Fault(
        "momentum-first-step-from-gradient",
        "optimizer",
        "the momentum buffer starts as the first gradient (v₁ = g) instead of μ·0 + g: "
        "equivalent, since the buffer starts at zero and μ·0 + g = g exactly",
        edit(OPT, "momentum", f"v = {MOMENTUM}", f"v = g if t == 1 else {MOMENTUM}"),
        "",
        MOMENTUM_SPEC,
        equivalent=True,
    ),
)

FAULTS_BY_NAME = {f.name: f for f in FAULTS}
