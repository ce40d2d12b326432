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

from unittest import mock

from comparisons.faults.fault import ACT, FAST_SPEC, LOSS, NET, OPT, TRAIN, Fault
from comparisons.faults.options import OPTION_FAULTS
from comparisons.faults.patching import edit

__all__ = ["FAST_SPEC", "FAULTS", "FAULTS_BY_NAME", "Fault"]

MOMENTUM = 'opt.momentum * state["momentum"] + g'
MOMENTUM_SPEC = {"optimizer": "momentum", "lr": 0.02, "momentum": 0.9}
ADAM_SPEC = {"optimizer": "adam", "lr": 0.01}
# One hidden layer of two units at dropout 0.5: some rows lose both, so the output layer's Z
# is exactly its bias, 0, there (at the first step).
KINK_SPEC = {"loss": "mse", "dropout": 0.5, "hidden": (2,)}
RMSPROP_SPEC = {"optimizer": "rmsprop", "lr": 0.01}
RMSPROP_AVERAGE = 'opt.alpha * state["rmsprop_v"] + (1 - opt.alpha) * g * g'
IN_PLACE_SGD = "theta -= opt.lr * g\n    return theta, {}"

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
    # The convention at a kink: g'(0) where Z is exactly 0 in every engine (a row whose
    # units were all dropped, times a zero bias), which no allowance may absorb.
    Fault(
        "leaky-relu-derivative-at-zero",
        "activation",
        "leaky_relu'(0) = 1 (Z >= 0 for Z > 0): the convention at the kink",
        edit(ACT, "leaky_relu_derivative", "np.where(Z > 0", "np.where(Z >= 0"),
        "dZ2",
        {**KINK_SPEC, "activation": "leaky_relu", "output": "leaky_relu"},
    ),
    Fault(
        "elu-without-minus-one",
        "activation",
        "elu = α·e^Z below 0: the -1 of α·(e^Z - 1) dropped (A jumps from 1 to 0 at Z = 0)",
        edit(ACT, "elu", "np.expm1(np.minimum(Z, 0.0))", "np.exp(np.minimum(Z, 0.0))"),
        "A1",
        {"activation": "elu"},
    ),
    Fault(
        "elu-derivative-without-alpha",
        "activation",
        "elu' = A below 0: the textbook A + α with its α dropped",
        edit(
            ACT,
            "elu_derivative",
            "ELU_ALPHA * np.exp(np.minimum(Z, 0.0))",
            "np.expm1(np.minimum(Z, 0.0))",
        ),
        "dZ2",
        {"activation": "elu"},
    ),
    Fault(
        "elu-derivative-one",
        "activation",
        "elu' = 1 on both sides: the positive side's slope taken for the negative side's e^Z",
        edit(ACT, "elu_derivative", "ELU_ALPHA * np.exp(np.minimum(Z, 0.0))", "1.0"),
        "dZ2",
        {"activation": "elu"},
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
        lambda: mock.patch.object(LOSS, "BCE_LOG_FLOOR", -10.0),
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
        "rmsprop-eps-inside-sqrt",
        "optimizer",
        "RMSprop's ε inside the square root, g/√(v + ε) (optax's default) in a run that "
        "follows PyTorch's g/(√v + ε)",
        edit(OPT, "rmsprop", "(np.sqrt(v) + opt.eps)", "np.sqrt(v + opt.eps)"),
        "ΔW1",
        RMSPROP_SPEC,
    ),
    Fault(
        "rmsprop-decay-swapped",
        "optimizer",
        "RMSprop's average with α and 1 - α swapped: v ← (1-α)·v + α·g²",
        edit(
            OPT,
            "rmsprop",
            RMSPROP_AVERAGE,
            '(1 - opt.alpha) * state["rmsprop_v"] + opt.alpha * g * g',
        ),
        "ΔW1",
        RMSPROP_SPEC,
    ),
    Fault(
        "rmsprop-average-not-stored",
        "optimizer",
        "RMSprop's average of g² used for the step but not stored: the old v kept",
        edit(OPT, "rmsprop", '{"rmsprop_v": v}', '{"rmsprop_v": state["rmsprop_v"]}'),
        "rmsprop_v_W1",
        RMSPROP_SPEC,
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
    *OPTION_FAULTS,  # clipping, schedules, dropout, batch norm: options.py
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
