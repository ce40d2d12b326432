"""What a scratch model is made of, and the checks of everything that comes in.

The equations live in ``network.py``, ``losses.py`` and ``optimizers.py``; this module holds
the two configuration records they read (``MLP``: the network; ``Optimizer``: the update
rule and its hyperparameters) and the checks that turn a bad input into a message that says
what is wrong, instead of a NumPy error three calls deep.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from scratch.activations import ACTIVATIONS
from scratch.losses import LOSSES
from scratch.trace_schema import OPTIMIZER_STATE, parameter_shapes

# The learning-rate schedules (``optimizers.learning_rate`` gives each one's formula).
LR_SCHEDULES = ("constant", "step", "cosine")


class ScratchInputError(ValueError):
    """Bad input to the scratch model: a wrong shape, name, dtype or a non-finite value."""


def _choose(kind: str, name: str, table) -> None:
    if name not in table:
        raise ScratchInputError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}")


@dataclass(frozen=True)
class MLP:
    """What the network is: layer widths, activations, the loss and dropout.

    ``sizes = (n_0, n_1, …, n_L)``; hidden layers 1..L-1 use ``hidden``, layer L uses
    ``output``. The loss must fit the output activation (e.g. ``bce`` needs probabilities,
    so a sigmoid output; ``bce_logits`` and ``softmax_cross_entropy`` need raw logits).
    ``dropout`` p in [0, 1): in training, each hidden unit's output is dropped with
    probability p and the kept ones scaled by 1/(1 - p) (inverted dropout); 0: none.
    ``batch_norm``: each hidden layer normalizes its pre-activation over the batch before the
    activation (scale ``gammal``, shift ``betal``), keeping running statistics with momentum
    ``bn_momentum`` m (running ← (1 - m)·running + m·batch's, PyTorch's convention) and
    ``bn_eps`` ε under the square root.
    """

    sizes: tuple[int, ...]
    hidden: str = "sigmoid"
    output: str = "identity"
    loss: str = "bce_logits"
    dropout: float = 0.0
    batch_norm: bool = False
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(self.sizes))
        if len(self.sizes) < 2 or any(
            not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1 for n in self.sizes
        ):
            raise ScratchInputError(
                f"sizes must list at least two positive integer widths (n_0, …, n_L); "
                f"got {self.sizes!r}"
            )
        _choose("activation", self.hidden, sorted(ACTIVATIONS))
        _choose("activation", self.output, sorted(ACTIVATIONS))
        _choose("loss", self.loss, sorted(LOSSES))
        wanted = LOSSES[self.loss].output_activation
        if wanted is not None and self.output != wanted:
            raise ScratchInputError(
                f"loss {self.loss!r} expects output activation {wanted!r}, got {self.output!r}"
            )
        if self.loss == "softmax_cross_entropy" and self.sizes[-1] < 2:
            raise ScratchInputError("softmax_cross_entropy needs at least 2 outputs (n_L >= 2)")
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ScratchInputError(f"dropout must be a number in [0, 1) (0: none); got {p!r}")
        if p and len(self.sizes) < 3:
            raise ScratchInputError(
                "dropout acts on hidden layers, and this network has none: add a hidden "
                "layer or set dropout = 0"
            )
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise ScratchInputError(f"batch_norm must be true or false; got {self.batch_norm!r}")
        if self.batch_norm and len(self.sizes) < 3:
            raise ScratchInputError(
                "batch_norm acts on hidden layers, and this network has none: add a hidden "
                "layer or set batch_norm = false"
            )
        m, eps = self.bn_momentum, self.bn_eps
        for name, value in (("bn_momentum", m), ("bn_eps", eps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScratchInputError(f"{name} must be a number; got {value!r}")
        if not 0 <= m <= 1:
            raise ScratchInputError(f"bn_momentum must be in [0, 1]; got {m}")
        if not 0 < eps < math.inf:
            raise ScratchInputError(f"bn_eps must be a finite number > 0; got {eps}")

    @functools.cached_property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def activation_of(self, layer: int) -> str:
        """The activation name of layer ``layer`` (1-based)."""
        return self.output if layer == self.n_layers else self.hidden


@dataclass(frozen=True)
class Optimizer:
    """An optimizer's name and hyperparameters; each optimizer reads the ones it needs.

    The defaults are the project's default run (plain SGD, lr 0.5, on the Occupancy model)
    and the usual values of the rest (PyTorch's and optax's defaults); the run spec starts
    from them, so each default is written here and nowhere else.

    ``alpha`` is RMSprop's decay of its average of g² (PyTorch's ``alpha``, optax's
    ``decay``); ``eps`` is Adam's and RMSprop's ε, outside the square root in both.

    ``l2`` adds λ·W to the weights' gradient (any optimizer but adamw); ``weight_decay`` is
    decoupled decay, θ ← θ - lr·λ·θ before the step (adamw only); ``clip_norm`` c > 0 scales
    every gradient by min(1, c / (‖g‖ + 1e-6)) before either, ‖g‖ the norm of all of them
    together (0: no clipping). ``lr_schedule`` "step" multiplies the learning rate by
    ``lr_gamma`` every ``lr_step_size`` updates; "cosine" warms it up linearly over
    ``lr_warmup`` updates, then decays it along a half cosine to ``lr_min`` at update
    ``lr_decay_steps`` (0: the run's last; the run's inputs fill it in); "constant": no
    schedule.
    """

    name: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    alpha: float = 0.99
    eps: float = 1e-8
    l2: float = 0.0
    weight_decay: float = 0.0
    clip_norm: float = 0.0
    lr_schedule: str = "constant"
    lr_step_size: int = 100
    lr_gamma: float = 0.1
    lr_warmup: int = 0
    lr_min: float = 0.0
    lr_decay_steps: int = 0

    def __post_init__(self) -> None:
        _choose("optimizer", self.name, OPTIMIZER_STATE)
        numbers = (
            "lr", "momentum", "beta1", "beta2", "alpha", "eps", "l2", "weight_decay", "clip_norm",
            "lr_gamma", "lr_min",
        )  # fmt: skip
        for field in numbers:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScratchInputError(f"{field} must be a number; got {value!r}")
            # lr = inf is allowed: it is the quickest way to make training diverge on purpose
            if math.isnan(value) or (math.isinf(value) and field != "lr"):
                raise ScratchInputError(f"{field} must be a finite number; got {value}")
        if not self.lr > 0:
            raise ScratchInputError(f"lr must be > 0; got {self.lr}")
        for field in ("momentum", "beta1", "beta2", "alpha"):
            if not 0 <= getattr(self, field) < 1:
                raise ScratchInputError(f"{field} must be in [0, 1); got {getattr(self, field)}")
        if not self.eps > 0 or self.l2 < 0 or self.weight_decay < 0:
            raise ScratchInputError("eps must be > 0, and l2 and weight_decay >= 0")
        _choose("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        for field, least in (("lr_step_size", 1), ("lr_warmup", 0), ("lr_decay_steps", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ScratchInputError(f"{field} must be an integer; got {value!r}")
            if value < least:
                raise ScratchInputError(f"{field} must be >= {least} (updates); got {value}")
        if self.lr_schedule == "cosine":
            if not 0 <= self.lr_min < self.lr:
                raise ScratchInputError(
                    f"lr_min must be >= 0 and below lr ({self.lr}); got {self.lr_min}"
                )
            if self.lr_decay_steps and self.lr_decay_steps <= self.lr_warmup:
                raise ScratchInputError(
                    f"lr_decay_steps ({self.lr_decay_steps}) must be above lr_warmup "
                    f"({self.lr_warmup}): the cosine starts where the warm-up ends"
                )
        if not 0 < self.lr_gamma <= 1:
            raise ScratchInputError(f"lr_gamma must be in (0, 1]; got {self.lr_gamma}")
        if self.clip_norm < 0:
            raise ScratchInputError(
                f"clip_norm must be >= 0 (0: no clipping); got {self.clip_norm}"
            )
        if self.name in ("momentum", "nesterov") and self.momentum == 0:
            # With μ = 0 there is no buffer to keep (torch.optim.SGD keeps none): plain SGD.
            raise ScratchInputError(f"{self.name} needs momentum > 0; use sgd for μ = 0")
        if self.name == "adamw" and self.l2:
            raise ScratchInputError("adamw takes decoupled weight_decay, not l2; set l2 = 0")
        if self.name != "adamw" and self.weight_decay:
            raise ScratchInputError(
                f"weight_decay (decoupled) is for adamw; "
                f"use l2 for L2 regularization with {self.name}"
            )


def check_inputs(mlp: MLP, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray) -> None:
    """Fail early, with a message that says what is wrong, on inputs backprop cannot use."""
    shapes = parameter_shapes(mlp.sizes, mlp.batch_norm)
    if sorted(params) != sorted(shapes):
        raise ScratchInputError(f"parameters must be {list(shapes)}; got {sorted(params)}")
    for name, shape in shapes.items():
        if params[name].shape != shape:
            raise ScratchInputError(
                f"{name} has shape {params[name].shape}, expected {shape} for sizes {mlp.sizes}"
            )
    if X.ndim != 2 or X.shape[1] != mlp.sizes[0]:
        raise ScratchInputError(f"X must be (B, {mlp.sizes[0]}); got shape {X.shape}")
    if X.shape[0] == 0:
        raise ScratchInputError("empty batch: X has 0 rows")
    if Y.shape != (X.shape[0], mlp.sizes[-1]):
        raise ScratchInputError(
            f"Y must be (B, n_L) = {(X.shape[0], mlp.sizes[-1])}; got shape {Y.shape}"
        )
    for name, arr in (("X", X), ("Y", Y)):
        if not np.isfinite(arr).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ScratchInputError(f"{name} holds a non-finite value at index {bad}: {arr[bad]}")
