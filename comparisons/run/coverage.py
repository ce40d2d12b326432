"""The covering set of ``check``: short runs that together execute every code path of scratch.

Each case is a 12-row synthetic problem (two epochs) with a few spec changes. Together they
run every activation in a hidden layer and in the output layer (forward and derivative),
every loss head, every optimizer with and without L2 and decoupled decay, gradient clipping
(clipping and not, with L2, in each dtype), a step-decay learning rate (with Adam and with
AdamW's decay, in each dtype), a cosine one with warm-up (in each dtype), dropout (in each
dtype, through two hidden layers and through three), batch normalization (in each dtype, with
dropout after it in one, with PyTorch's momentum and another), float64 and
float32, batch size 1, a partial last batch, drop_last, no shuffle, several outputs, depth 1
and depth 4. Some cases also set up the conditions under which the classic bugs show: square
weights (a transposed W fits), saturated outputs (the BCE clamp), logits in the hundreds (a
softmax without its max shift overflows), batches of 5 over 12 rows (a mean over the nominal
batch size is wrong only on the last batch), a leaky ReLU output whose Z is exactly 0 (a row
whose units were all dropped, before its bias moves: the derivative's convention at 0).

``tests/comparisons/modes/test_check.py`` proves the coverage claims against this table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from comparisons.run.spec import RunSpec

# A step-decay learning rate that decays twice in a case's six updates (at the third and the
# fifth), so that the schedule's every branch and the decay's timing are exercised.
STEP_DECAY = {"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": 0.5}
# A cosine with two warm-up updates over the case's run (its length: lr_decay_steps = 0).
COSINE = {"lr_schedule": "cosine", "lr_warmup": 2, "lr_min": 0.001}

BASE = {
    "dataset": "synthetic",
    "synthetic_rows": 12,
    "synthetic_features": 4,
    "hidden": (4, 4),
    "epochs": 2,
    "batch_size": 5,
}


@dataclass(frozen=True)
class Case:
    name: str
    changes: dict = field(default_factory=dict)

    def spec(self, engines: tuple[str, ...]) -> RunSpec:
        return RunSpec().replace(**{**BASE, **self.changes}, engines=engines)


CASES = (
    Case("sigmoid-bce_logits-sgd", {"activation": "sigmoid", "lr": 0.1}),
    Case(
        "tanh-mse-momentum-l2-float32-batch1-clip",
        {
            "activation": "tanh",
            "loss": "mse",
            "synthetic_classes": 3,
            "optimizer": "momentum",
            "lr": 0.02,
            "l2": 0.01,
            "dtype": "float32",
            "batch_size": 1,
            "clip_norm": 1.5,  # ‖g‖ is above it at some steps, below at others (a test holds)
        },
    ),
    Case(
        "relu-softmax-nesterov-drop_last-cosine_lr-batch_norm",
        {
            "batch_norm": True,
            "activation": "relu",
            "loss": "softmax_cross_entropy",
            "synthetic_classes": 3,
            "optimizer": "nesterov",
            "lr": 0.02,
            "momentum": 0.8,
            "drop_last": True,
            **COSINE,
        },
    ),
    Case(
        "leaky_relu-bce-adam-l2-saturated",
        {
            "activation": "leaky_relu",
            "loss": "bce",
            "output": "sigmoid",
            "optimizer": "adam",
            "lr": 0.01,
            "l2": 0.01,
            "init_gain": 15.0,
        },
    ),
    Case(
        "identity-mse_tanh-adamw-no_shuffle-step_lr",
        {
            "activation": "identity",
            "loss": "mse",
            "output": "tanh",
            "synthetic_classes": 3,
            "optimizer": "adamw",
            "lr": 0.01,
            "weight_decay": 0.05,
            "shuffle": False,
            **STEP_DECAY,
        },
    ),
    Case(
        "depth1-mse_sigmoid-sgd-l2-clip",
        {
            "hidden": (),
            "loss": "mse",
            "output": "sigmoid",
            "lr": 0.1,
            "l2": 0.01,
            "clip_norm": 0.15,  # ‖g‖ is above it at some steps, below at others
        },
    ),
    Case(
        "depth4-tanh-bce_logits-adam-float32-step_lr-dropout-batch_norm",
        {
            "batch_norm": True,
            "bn_momentum": 0.3,
            "hidden": (5, 4, 3),
            "activation": "tanh",
            "optimizer": "adam",
            "lr": 0.01,
            "dtype": "float32",
            "dropout": 0.25,
            **STEP_DECAY,
        },
    ),
    Case(
        "sigmoid-mse_relu-nesterov-l2-float32-cosine_lr",
        {
            "activation": "sigmoid",
            "loss": "mse",
            "output": "relu",
            "optimizer": "nesterov",
            "lr": 0.02,
            "l2": 0.01,
            "dtype": "float32",
            **COSINE,
        },
    ),
    Case(
        "tanh-mse_leaky_relu-momentum-dropout",
        {
            "activation": "tanh",
            "loss": "mse",
            "output": "leaky_relu",
            "optimizer": "momentum",
            "lr": 0.02,
            # half the units dropped: at the first step some rows lose all four, and the
            # output's Z there is exactly its zero bias (the kink's convention at Z = 0)
            "dropout": 0.5,
        },
    ),
    Case(
        "relu-softmax-adamw_no_decay-float32-large_logits",
        {
            "activation": "relu",
            "loss": "softmax_cross_entropy",
            "synthetic_classes": 3,
            "optimizer": "adamw",
            "lr": 0.01,
            "dtype": "float32",
            "init_gain": 300.0,
        },
    ),
    Case(
        "elu-mse_elu-rmsprop-dropout",
        {
            "activation": "elu",
            "loss": "mse",
            "output": "elu",
            "optimizer": "rmsprop",
            "lr": 0.01,
            "alpha": 0.9,  # not the default 0.99: a rule that ignores α shows
            "dropout": 0.3,
        },
    ),
    Case(
        "elu-softmax-rmsprop-l2-float32-clip",
        {
            "activation": "elu",
            "loss": "softmax_cross_entropy",
            "synthetic_classes": 3,
            "optimizer": "rmsprop",
            "lr": 0.01,
            "l2": 0.01,
            "dtype": "float32",
            "clip_norm": 0.5,
        },
    ),
)

# The short drift run: scratch's own training loop (which draws its own dropout masks)
# against the references' free loops.
DRIFT_CASE = Case(
    "drift: sigmoid-bce_logits-sgd-dropout-batch_norm",
    {"activation": "sigmoid", "lr": 0.1, "dropout": 0.3, "batch_norm": True},
)
# Finite differences in float64 at the first steps of every float64 case.
GRADCHECK_STEPS = 2
