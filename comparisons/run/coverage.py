"""The covering set of ``check``: short runs that together hold every pair of option values.

Options interact in pairs: L2 or AdamW's decay must skip batch norm's γ and β, clipping's
norm must take them in, a schedule must count one optimizer's updates as another's. So the
cases are built as a covering set of the options' product (``run/pairwise.py``, the same
construction as the slow tier's options matrix): every pair of values of any two of the
factors below (the hidden activation, the output activation, the loss, the optimizer, L2,
decoupled decay, clipping, the learning-rate schedule, dropout, batch normalization, the
dtype, the batching — a partial last batch, batch size 1, ``drop_last`` —, shuffling and
one or several outputs) meets in at least one case, but the pairs the run spec's own
validation refuses in every run (a loss with an output layer it does not fit, L2 with
adamw, decoupled decay with another optimizer, batch normalization with a 1-row batch).
The factors' values are the spec's own lists (``ACTIVATIONS``, ``LOSSES``,
``OPTIMIZER_STATE``, ``LR_SCHEDULES``, ``DTYPES``), so a new activation, loss, optimizer or
schedule joins the covering set, in every pair, by being added there.

Each case is a 12-row synthetic problem (two epochs, layers of 4 units: the second layer's
weights are square, so a transposed W fits) with its row's options. A few more cases set up
the conditions under which the classic bugs show: saturated outputs (the BCE clamp), logits
in the hundreds (a softmax without its max shift overflows), depth 1 and depth 4 (with
another batch-norm momentum than PyTorch's), a leaky ReLU output whose Z is exactly 0 (a row
whose units were all dropped, before its bias moves: the derivative's convention at 0);
batches of 5 over 12 rows leave a partial last batch (a mean over the nominal batch size is
wrong only there).

``tests/comparisons/modes/test_check.py`` proves the coverage claims against this table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from comparisons.run.inputs import schedule_for
from comparisons.run.pairwise import pairwise
from comparisons.run.spec import DTYPES, RunSpec, SpecError
from scratch.activations import ACTIVATIONS
from scratch.config import LR_SCHEDULES
from scratch.losses import LOSSES
from scratch.trace_schema import OPTIMIZER_STATE

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


# The factors of the covering set: each option and the values it takes. Batching and the
# schedule are named values, spelled out in BATCHING and SCHEDULES.
BATCHING = {
    "partial_last_batch": {"batch_size": 5},  # 12 rows: 5, 5, 2
    "batch1": {"batch_size": 1, "epochs": 1},  # 12 one-row steps
    "drop_last": {"batch_size": 5, "drop_last": True},
}
SCHEDULES = {"constant": {}, "step": STEP_DECAY, "cosine": COSINE}
FACTORS = {
    "activation": tuple(ACTIVATIONS),
    "output": tuple(ACTIVATIONS),
    "loss": tuple(LOSSES),
    "optimizer": tuple(OPTIMIZER_STATE),
    "l2": (0.0, 0.01),
    "weight_decay": (0.0, 0.05),
    "clip_norm": (0.0, 0.5),  # ‖g‖ is above it at some steps, below at others (a test holds)
    "lr_schedule": LR_SCHEDULES,
    "dropout": (0.0, 0.3),
    "batch_norm": (False, True),
    "dtype": DTYPES,
    "batching": tuple(BATCHING),
    "shuffle": (True, False),
    "synthetic_classes": (2, 3),  # one output (two with softmax), or three
}
# Each optimizer's learning rate (and momentum) for these short runs; any other optimizer
# takes ADAPTIVE_LR.
LEARNING_RATES = {
    "sgd": {"lr": 0.1},
    "momentum": {"lr": 0.02, "momentum": 0.9},
    "nesterov": {"lr": 0.02, "momentum": 0.8},
    "rmsprop": {"lr": 0.01, "alpha": 0.9},  # not the default 0.99: a rule that ignores α shows
}
ADAPTIVE_LR = {"lr": 0.01}


def row_changes(row: tuple) -> dict:
    """The spec changes of one row of the factors."""
    values = dict(zip(FACTORS, row, strict=True))
    changes = {**LEARNING_RATES.get(values["optimizer"], ADAPTIVE_LR)}
    changes.update(BATCHING[values.pop("batching")])
    changes.update(SCHEDULES.get(values["lr_schedule"], {}))
    changes.update(values)
    return changes


def row_name(row: tuple) -> str:
    v = dict(zip(FACTORS, row, strict=True))
    parts = [v["activation"], f"{v['loss']}_{v['output']}", v["optimizer"]]
    parts += ["l2"] * bool(v["l2"]) + ["decay"] * bool(v["weight_decay"])
    parts += ["clip"] * bool(v["clip_norm"])
    parts += [f"{v['lr_schedule']}_lr"] * (v["lr_schedule"] != "constant")
    parts += ["dropout"] * bool(v["dropout"]) + ["batch_norm"] * v["batch_norm"]
    parts += [v["dtype"]] * (v["dtype"] != DTYPES[0])
    parts += [v["batching"]] * (v["batching"] != "partial_last_batch")
    parts += ["no_shuffle"] * (not v["shuffle"])
    parts += [f"{v['synthetic_classes']}classes"] * (v["synthetic_classes"] != 2)
    return "-".join(parts)


def feasible(row: tuple) -> bool | str:
    """True where the run spec's own validation takes the row (its keys, its schedule), else
    the reason it gives."""
    base = _base_spec()
    flat = base.to_dict()
    changes = {k: v for k, v in row_changes(row).items() if flat[k] != v}  # fewer to check
    try:
        spec = base.replace(**changes)
        schedule_for(spec, spec.synthetic_rows)
    except SpecError as refused:
        return str(refused)
    return True


@functools.cache
def _base_spec() -> RunSpec:
    return RunSpec().replace(**BASE, engines=("scratch",))


def pairs_cases() -> tuple[Case, ...]:
    """Every pair of the factors' values that the spec allows, in as few cases as the greedy
    construction finds."""
    rows = pairwise(*FACTORS.values(), valid=feasible)
    return tuple(Case(row_name(row), row_changes(row)) for row in rows)


# The cases that set up the conditions under which classic bugs show (beyond the pairs).
CONDITIONS = (
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
)


@functools.cache
def cases() -> tuple[Case, ...]:
    """check's cases: the pairs' (built on first use: about half a second) and the
    conditions'."""
    return (*pairs_cases(), *CONDITIONS)


def __getattr__(name: str):
    if name == "CASES":  # built when first asked for, not when the module is imported
        return cases()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The short drift runs: scratch's own training loop (which draws its own dropout masks)
# against the references' free loops. Each engine goes on from its own state, so what an
# engine keeps shows here whatever its trace says: every optimizer that keeps state (with L2,
# the classic place for a buffer kept wrong) and a learning-rate schedule (a step count).
DRIFT_CASES = (
    Case(
        "drift: sigmoid-bce_logits-sgd-dropout-batch_norm",
        {"activation": "sigmoid", "lr": 0.1, "dropout": 0.3, "batch_norm": True},
    ),
    Case(
        "drift: relu-bce_logits-momentum-l2-step_lr",
        {"activation": "relu", "optimizer": "momentum", "lr": 0.02, "l2": 0.01, **STEP_DECAY},
    ),
    Case(
        "drift: tanh-softmax-nesterov-l2",
        {
            "activation": "tanh",
            "loss": "softmax_cross_entropy",
            "synthetic_classes": 3,
            "optimizer": "nesterov",
            "lr": 0.02,
            "momentum": 0.8,
            "l2": 0.01,
        },
    ),
    Case(
        "drift: leaky_relu-mse-adam-l2-cosine_lr",
        {
            "activation": "leaky_relu",
            "loss": "mse",
            "optimizer": "adam",
            "lr": 0.01,
            "l2": 0.01,
            **COSINE,
        },
    ),
    Case(
        "drift: sigmoid-bce_logits-adamw",
        {"activation": "sigmoid", "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05},
    ),
)
DRIFT_CASE = DRIFT_CASES[0]
# Finite differences in float64 at the first steps of every float64 case.
GRADCHECK_STEPS = 2
