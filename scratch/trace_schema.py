"""The trace: every tensor an engine reports for one training step, each defined once.

A trace is a dict from tensor name to array, in dataflow order. Every other part of the
project — scratch's training step, both references, the tolerance tables, the oracle, the
reports — asks this module for names, order, kind, layer and layout instead of spelling
them out again. Adding a kind of tensor is one entry in a table below, plus the code that
computes it.

Shape letters: B the batch size, L the number of layers with weights, n_l the width of
layer l (n_0 features, n_L outputs).

Tensors come in families. A family is per step (``loss``), per layer (``Z`` gives Z1 … ZL)
or per parameter (``Δ`` gives ΔW1, Δb1, …, one for every parameter ``W1, b1, …, WL, bL``).
The dataflow order of a step's trace is

    forward     Z1, A1, …, ZL, AL       (with batch normalization, each hidden layer's Zl is
                                         followed by mul, varl, running_meanl, running_varl,
                                         xhatl and Nl, and Al = g(Nl); with dropout, each
                                         hidden layer's Al by its mask Ml and its output Dl)
    loss        loss
    backward    dZL, dWL, dbL, …, dZ1, dW1, db1        (layers from the top down; a batch-
                normalized layer's dZl is preceded by dNl, dgammal, dbetal, dxhatl, dvarl, dmul)
    clipping    grad_norm                              (only when clip_norm > 0)
    schedule    lr                                     (only with a learning-rate schedule)
    update      ΔW1, Δb1, …, ΔWL, ΔbL
    state       the optimizer's state after the step, per parameter (momentum_W1, …)
    parameter   W1, b1, …, WL, bL: the new parameters

and the oracle checks the batch itself (``rows``, ``X``, ``Y``) before all of them.

Each family names the scratch function that produces it (``producer``): that is where a
reader should look when the tensor is the first to disagree. ``{act}``, ``{loss}`` and
``{optimizer}`` in a producer or equation are filled in for the run by
``trace_equations.describe``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Protocol

# Each kind of tensor and the stage of the step it belongs to, in dataflow order.
STAGES = {
    "batch": "batch",
    "input": "batch",
    "forward": "forward",
    "dropout_mask": "forward",
    "batch_stat": "forward",
    "running_stat": "forward",
    "loss": "loss",
    "error_term": "error terms",
    "batch_stat_grad": "error terms",
    "gradient": "gradients",
    "gradient_norm": "gradients",
    "learning_rate": "update",
    "update": "update",
    "counter": "update",
    "optimizer_state": "update",
    "parameter": "update",
}
KINDS = tuple(STAGES)


@dataclass(frozen=True)
class Parameter:
    """A kind of parameter a layer has: ``W`` (weights) and ``b`` (biases) in every layer;
    ``gamma`` and ``beta`` (batch normalization's scale and shift) in each hidden layer of a
    batch-normalized network."""

    letter: str
    shape: str
    meaning: str
    weight_shaped: bool  # (n_{l-1}, n_l): the one layout PyTorch's nn.Linear transposes
    decays: bool  # L2 regularization and decoupled weight decay touch it


PARAMETERS = (
    Parameter("W", "(n_{l-1}, n_l)", "the weights of layer l", weight_shaped=True, decays=True),
    Parameter("b", "(n_l,)", "the biases of layer l", weight_shaped=False, decays=False),
)
# Batch normalization's own parameters (never decayed, as is the custom for them).
BN_PARAMETERS = (
    Parameter("gamma", "(n_l,)", "batch normalization's scale γ of layer l", False, False),
    Parameter("beta", "(n_l,)", "batch normalization's shift β of layer l", False, False),
)
_PARAMETER = {p.letter: p for p in (*PARAMETERS, *BN_PARAMETERS)}


@dataclass(frozen=True)
class Family:
    """One family of trace tensors and everything the rest of the project needs to know
    about it. Per-parameter families have the parameter's shape and layout."""

    prefix: str  # the name is prefix + layer ("Z2"), prefix + parameter ("ΔW2"), or prefix
    kind: str
    per: str  # "step", "layer" or "parameter"
    shape: str  # "(B, n_l)"; per-parameter families: "" (the parameter's own shape)
    meaning: str
    producer: str  # "file.py:function" in scratch/, placeholders filled by ``describe``
    equation: str  # the equation with {l}, {prev}, {p} (the parameter) to fill in
    dtype: str = "run"  # "run": the run's float dtype; else a NumPy dtype name ("int64")


# The batch, checked exactly before any arithmetic: scratch batches the data itself.
BATCH = (
    Family("rows", "batch", "step", "(B,)", "the batch's row indices into the data set",
           "training.py:epoch_batches", "rows = order[start : start + B]"),
    Family("X", "input", "step", "(B, n_0)", "the batch's inputs", "training.py:minibatch",
           "X = X_data[rows]"),
    Family("Y", "input", "step", "(B, n_L)", "the batch's targets", "training.py:minibatch",
           "Y = Y_data[rows]"),
)  # fmt: skip

FORWARD = (
    Family("Z", "forward", "layer", "(B, n_l)", "pre-activation of layer l",
           "network.py:linear", "Z{l} = {prev} @ W{l} + b{l}"),
    Family("A", "forward", "layer", "(B, n_l)", "activation of layer l (A0 is X)",
           "activations.py:{act}", "A{l} = {act}(Z{l})"),
)  # fmt: skip

# With dropout, per hidden layer (l = 1..L-1), after A_l: the mask the step was given, and
# the layer's output after dropout, which layer l + 1 reads in A_l's place.
DROPOUT = (
    Family("M", "dropout_mask", "layer", "(B, n_l)",
           "the dropout keep mask of layer l: 1 keeps a unit, 0 drops it",
           "network.py:dropout_masks",
           "M{l} = 1 where U >= p, else 0; U uniform from rng([seed, step, 1])"),
    Family("D", "forward", "layer", "(B, n_l)",
           "layer l's output after inverted dropout: what layer l+1 reads",
           "network.py:dropout", "D{l} = A{l} ⊙ M{l} / (1 - p)"),
)  # fmt: skip

# With batch normalization, per hidden layer (l = 1..L-1), after Z_l: the batch's statistics,
# the running statistics after the step, the normalized Z_l and its scaled and shifted form
# N_l, which the activation reads in Z_l's place (A_l = g(N_l)).
BATCH_NORM = (
    Family("mu", "batch_stat", "layer", "(n_l,)", "μ_B, the batch mean of Z_l",
           "network.py:batch_norm", "mu{l} = mean over the batch of Z{l}"),
    Family("var", "batch_stat", "layer", "(n_l,)",
           "σ²_B, the batch variance of Z_l (biased: divided by B)",
           "network.py:batch_norm", "var{l} = mean over the batch of (Z{l} - mu{l})²"),
    Family("running_mean", "running_stat", "layer", "(n_l,)",
           "the running mean after the step (evaluation normalizes with it)",
           "network.py:running_stats", "running_mean{l} ← (1 - m)·running_mean{l} + m·mu{l}"),
    Family("running_var", "running_stat", "layer", "(n_l,)",
           "the running variance after the step (unbiased: the batch's times B/(B - 1))",
           "network.py:running_stats",
           "running_var{l} ← (1 - m)·running_var{l} + m·var{l}·B/(B - 1)"),
    Family("xhat", "forward", "layer", "(B, n_l)", "Z_l normalized with the batch's statistics",
           "network.py:batch_norm", "xhat{l} = (Z{l} - mu{l}) / √(var{l} + ε)"),
    Family("N", "forward", "layer", "(B, n_l)",
           "the batch-normalized pre-activation, scaled and shifted: the activation's input",
           "network.py:batch_norm", "N{l} = gamma{l} ⊙ xhat{l} + beta{l}"),
)  # fmt: skip
# Backward through a batch-normalized layer, step by step (network.py:batch_norm_backward),
# from the error at its output N_l down to the error term dZ_l.
BATCH_NORM_BACKWARD = (
    Family("dN", "error_term", "layer", "(B, n_l)", "∂loss/∂N_l, the error at the normalized "
           "pre-activation",
           "network.py:hidden_error, activations.py:{act}_derivative, network.py:backward",
           "dN{l} = (dZ{next} @ W{next}.T) * {act}'(N{l})"),
    Family("dxhat", "error_term", "layer", "(B, n_l)", "∂loss/∂x̂_l",
           "network.py:batch_norm_backward", "dxhat{l} = dN{l} ⊙ gamma{l}"),
    Family("dvar", "batch_stat_grad", "layer", "(n_l,)", "∂loss/∂σ²_B of layer l",
           "network.py:batch_norm_backward",
           "dvar{l} = Σ over the batch of dxhat{l} ⊙ (Z{l} - mu{l}) · (-½)(var{l} + ε)^(-3/2)"),
    Family("dmu", "batch_stat_grad", "layer", "(n_l,)", "∂loss/∂μ_B of layer l (through x̂ "
           "and σ²)", "network.py:batch_norm_backward",
           "dmu{l} = -Σ dxhat{l} / √(var{l} + ε) + dvar{l} · (-2/B)·Σ (Z{l} - mu{l})"),
)  # fmt: skip
LOSS = (
    Family("loss", "loss", "step", "()", "the loss, mean over the batch",
           "losses.py:{loss}", "loss = mean over the batch of {loss}(A{L}, Y)"),
)  # fmt: skip

# Backward, per layer from the top down: the error term, then the layer's gradients.
ERROR_TERM = Family(
    "dZ", "error_term", "layer", "(B, n_l)", "∂loss/∂Z_l, the error term (delta) of layer l",
    "network.py:hidden_error, activations.py:{act}_derivative, network.py:backward",
    "dZ{l} = (dZ{next} @ W{next}.T) * {act}'(Z{l})",
)  # fmt: skip
GRADIENTS = {
    "W": Family("d", "gradient", "parameter", "", "∂loss/∂W_l", "network.py:weight_grad",
                "dW{l} = {prev}.T @ dZ{l}"),
    "b": Family("d", "gradient", "parameter", "", "∂loss/∂b_l", "network.py:bias_grad",
                "db{l} = Σ over the batch of dZ{l}"),
    "gamma": Family("d", "gradient", "parameter", "", "∂loss/∂γ_l",
                    "network.py:batch_norm_backward",
                    "dgamma{l} = Σ over the batch of dN{l} ⊙ xhat{l}"),
    "beta": Family("d", "gradient", "parameter", "", "∂loss/∂β_l",
                   "network.py:batch_norm_backward", "dbeta{l} = Σ over the batch of dN{l}"),
}  # fmt: skip

# The global norm of every gradient together, before clipping; only in a run that clips.
GRADIENT_NORM = Family(
    "grad_norm", "gradient_norm", "step", "()",
    "‖g‖, the norm of every parameter's gradient together, before clipping",
    "optimizers.py:clip_by_global_norm", "grad_norm = √(Σ over every parameter p of Σ dp²)",
)  # fmt: skip

# The learning rate of this step's update; only in a run with a learning-rate schedule.
LEARNING_RATE = Family(
    "lr", "learning_rate", "step", "()", "the learning rate in effect at this update",
    "optimizers.py:learning_rate", "lr = {schedule}",
)  # fmt: skip

UPDATE = Family(
    "Δ", "update", "parameter", "", "the update: new parameter minus old",
    "optimizers.py:update, optimizers.py:{rule_function}", "Δ{p} = {rule}",
)  # fmt: skip
NEW_PARAMETER = Family(
    "", "parameter", "parameter", "", "the parameter after the step",
    "optimizers.py:update", "{p} ← {p} + Δ{p}",
)  # fmt: skip


def _state(prefix: str, meaning: str, equation: str) -> Family:
    return Family(
        prefix,
        "optimizer_state",
        "parameter",
        "",
        meaning,
        "optimizers.py:{rule_function}, optimizers.py:update",
        equation,
    )


# The step count t after the step (t = 1 after the first step), for the optimizers whose
# update depends on it (Adam's bias corrections). It is an exact integer in every engine.
COUNTER = Family(
    "t", "counter", "step", "()", "the optimizer's step count after the step",
    "optimizers.py:update", "t = t + 1", dtype="int64",
)  # fmt: skip
COUNTED = {
    "sgd": False, "momentum": False, "nesterov": False, "adam": True, "adamw": True,
    "rmsprop": False,
}  # fmt: skip

# The optimizer state each optimizer keeps per parameter, after the step. The names are the
# same in all three engines' traces (torch.optim and optax name them otherwise; the
# references translate).
STATE = {
    "momentum": _state("momentum_", "the momentum buffer v", "{name} = μ·{name} + d{p}"),
    "adam_m": _state("adam_m_", "Adam's first moment m", "{name} = β1·{name} + (1-β1)·d{p}"),
    "adam_v": _state("adam_v_", "Adam's second moment v", "{name} = β2·{name} + (1-β2)·d{p}²"),
    "rmsprop_v": _state(
        "rmsprop_v_", "RMSprop's average of g², v", "{name} = α·{name} + (1-α)·d{p}²"
    ),
}
OPTIMIZER_STATE: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("momentum",),
    "nesterov": ("momentum",),
    "adam": ("adam_m", "adam_v"),
    "adamw": ("adam_m", "adam_v"),
    "rmsprop": ("rmsprop_v",),
}


class Network(Protocol):
    """What the schema needs of a network (``scratch.config.MLP`` is one)."""

    loss: str
    dropout: float
    batch_norm: bool

    @property
    def n_layers(self) -> int: ...

    def activation_of(self, layer: int) -> str: ...


class OptimizerSettings(Protocol):
    """What the schema needs of an optimizer (``scratch.config.Optimizer`` is one)."""

    name: str
    l2: float
    clip_norm: float
    lr_schedule: str


# --- names and order --------------------------------------------------------------------


def layer_parameters(n_layers: int, batch_norm: bool, l: int) -> tuple[Parameter, ...]:
    """The kinds of parameter layer l has: W and b; in a hidden layer of a batch-normalized
    network W, gamma and beta (no b: the batch's mean would cancel it, and beta shifts)."""
    if batch_norm and l < n_layers:
        return (PARAMETERS[0], *BN_PARAMETERS)
    return PARAMETERS


def param_names(n_layers: int, batch_norm: bool = False) -> list[str]:
    """W1, b1, …, WL, bL (W1, gamma1, beta1, … in batch-normalized layers): every parameter,
    in order."""
    return [
        f"{p.letter}{l}"
        for l in range(1, n_layers + 1)
        for p in layer_parameters(n_layers, batch_norm, l)
    ]


def parameter_shapes(
    sizes: tuple[int, ...], batch_norm: bool = False
) -> dict[str, tuple[int, ...]]:
    """The canonical shape of every parameter of a network of widths ``(n_0, …, n_L)``:
    ``Wl: (n_{l-1}, n_l)``, ``bl``, ``gammal``, ``betal``: ``(n_l,)``."""
    L = len(sizes) - 1
    return {
        f"{p.letter}{l}": (sizes[l - 1], sizes[l]) if p.weight_shaped else (sizes[l],)
        for l in range(1, L + 1)
        for p in layer_parameters(L, batch_norm, l)
    }


def running_names(n_layers: int, batch_norm: bool = False) -> list[str]:
    """running_mean1, running_var1, …: the running statistics a batch-normalized network keeps
    in its state (besides its parameters), one pair per hidden layer."""
    if not batch_norm:
        return []
    running = [f.prefix for f in BATCH_NORM if f.kind == "running_stat"]
    return [f"{prefix}{l}" for l in range(1, n_layers) for prefix in running]


@functools.lru_cache(maxsize=1024)
def state_names(optimizer: str, param: str) -> tuple[str, ...]:
    """The optimizer-state tensors kept for ``param``: ``("adam_m_W1", "adam_v_W1")``."""
    return tuple(STATE[s].prefix + param for s in OPTIMIZER_STATE[optimizer])


def batch_names() -> list[str]:
    """rows, X, Y: what the oracle checks before any arithmetic."""
    return [f.prefix for f in BATCH]


def names_of(network: Network, optimizer: OptimizerSettings) -> list[str]:
    """Every tensor of a step's trace in a run of this network with these optimizer settings."""
    scheduled = optimizer.lr_schedule != "constant"
    clipped, dropout = bool(optimizer.clip_norm), bool(network.dropout)
    batch_norm = bool(network.batch_norm)
    return trace_names(network.n_layers, optimizer.name, clipped, scheduled, dropout, batch_norm)


def trace_names(
    n_layers: int,
    optimizer: str,
    clipped: bool = False,
    scheduled: bool = False,
    dropout: bool = False,
    batch_norm: bool = False,
) -> list[str]:
    """Every tensor of a step's trace, in dataflow order (see the module's docstring);
    ``clipped``: the run clips its gradients (``clip_norm`` > 0), so ``grad_norm`` is one;
    ``scheduled``: its learning rate follows a schedule, so ``lr`` is one; ``dropout``: its
    hidden layers drop units, so each has a mask ``Ml`` and an output ``Dl``;
    ``batch_norm``: its hidden layers are batch-normalized (``BATCH_NORM``, and the
    parameters gammal and betal)."""
    L = n_layers
    params = param_names(L, batch_norm)
    names = []
    for l in range(1, L + 1):
        normalized = batch_norm and l < L
        names.append(f"Z{l}")
        names += [f"{f.prefix}{l}" for f in BATCH_NORM] if normalized else []
        names.append(f"A{l}")
        names += [f"{f.prefix}{l}" for f in DROPOUT] if dropout and l < L else []
    names += [f.prefix for f in LOSS]
    for l in range(L, 0, -1):
        if batch_norm and l < L:
            dN, dxhat, dvar, dmu = (f"{f.prefix}{l}" for f in BATCH_NORM_BACKWARD)
            names += [dN, f"dgamma{l}", f"dbeta{l}", dxhat, dvar, dmu]
        names.append(f"{ERROR_TERM.prefix}{l}")
        own = layer_parameters(L, batch_norm, l)
        names += [f"{GRADIENTS[p.letter].prefix}{p.letter}{l}" for p in PARAMETERS if p in own]
    names += [GRADIENT_NORM.prefix] if clipped else []
    names += [LEARNING_RATE.prefix] if scheduled else []
    names += [UPDATE.prefix + p for p in params]
    names += [COUNTER.prefix] if COUNTED[optimizer] else []
    names += [s for p in params for s in state_names(optimizer, p)]
    names += [NEW_PARAMETER.prefix + p for p in params]
    return names


# --- what a name means ------------------------------------------------------------------


def _kind_of_parameter(parameter: str) -> Parameter:
    """``W2`` -> the weights' Parameter, ``gamma1`` -> batch normalization's scale's."""
    return _PARAMETER[parameter.rstrip("0123456789")]


@dataclass(frozen=True)
class Tensor:
    """One trace tensor: its name, family, kind, layer and, for per-parameter tensors, the
    parameter it belongs to (``ΔW2`` -> parameter ``W2``)."""

    name: str
    family: Family
    layer: int | None
    parameter: str | None = None

    @property
    def kind(self) -> str:
        return self.family.kind

    @property
    def weight_shaped(self) -> bool:
        """Laid out as (n_{l-1}, n_l), like W_l: W2, dW2, ΔW2, momentum_W2, …"""
        return self.parameter is not None and _kind_of_parameter(self.parameter).weight_shaped

    @property
    def decays(self) -> bool:
        return self.parameter is not None and _kind_of_parameter(self.parameter).decays


_PER_STEP = {f.prefix: f for f in (*BATCH, *LOSS, GRADIENT_NORM, LEARNING_RATE, COUNTER)}
_PER_LAYER = {f.prefix: f for f in (*FORWARD, *DROPOUT, *BATCH_NORM, *BATCH_NORM_BACKWARD)}
_PER_PARAMETER = {
    **{f.prefix: f for f in (UPDATE, NEW_PARAMETER)},
    **{f.prefix: f for f in STATE.values()},
}
_LETTERS = "|".join(re.escape(p) for p in sorted(_PARAMETER, key=len, reverse=True))
_LAYER_NAME = re.compile(
    "(?P<prefix>"
    + "|".join(map(re.escape, sorted([*_PER_LAYER, ERROR_TERM.prefix], key=len, reverse=True)))
    + r")(?P<layer>\d+)"
)
_PARAMETER_NAME = re.compile(
    "(?P<prefix>"
    + "|".join(re.escape(p) for p in sorted({*_PER_PARAMETER, "d"}, key=len, reverse=True))
    + f")(?P<parameter>(?P<letter>{_LETTERS})(?P<layer>\\d+))"
)


@functools.lru_cache(maxsize=4096)
def parse(name: str) -> Tensor:
    """The tensor a trace name stands for; a KeyError for a name that is none."""
    if name in _PER_STEP:
        return Tensor(name, _PER_STEP[name], None)
    if m := _LAYER_NAME.fullmatch(name):
        layer = int(m["layer"])
        family = _PER_LAYER.get(m["prefix"], ERROR_TERM)
        return Tensor(name, family, layer)
    if m := _PARAMETER_NAME.fullmatch(name):
        prefix = m["prefix"]
        family = GRADIENTS[m["letter"]] if prefix == "d" else _PER_PARAMETER[prefix]
        return Tensor(name, family, int(m["layer"]), m["parameter"])
    raise KeyError(f"not a trace tensor name: {name!r}")


def dtype_of(name: str, run_dtype: str) -> str:
    """The dtype an engine reports ``name`` in: the run's (float64 or float32) for every
    tensor but the integer ones (the step count ``t``)."""
    family = parse(name).family
    return run_dtype if family.dtype == "run" else family.dtype


@functools.lru_cache(maxsize=4096)
def shape_of(name: str, sizes: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """The shape of trace tensor ``name`` in a network of widths ``sizes = (n_0, …, n_L)`` on a
    batch of ``batch`` rows, read from its family's (or its parameter's) shape template."""
    tensor = parse(name)
    template = tensor.family.shape or _kind_of_parameter(tensor.parameter).shape
    l = tensor.layer or 0
    values = {"B": batch, "n_l": sizes[l], "n_{l-1}": sizes[l - 1] if l else 0}
    values.update({"n_0": sizes[0], "n_L": sizes[-1]})
    inner = template.strip("()").replace(" ", "")
    return tuple(values[part] for part in inner.split(",") if part)


def kind_of(name: str) -> str:
    """``dZ2`` -> ``error_term``, ``ΔW1`` -> ``update``."""
    return parse(name).kind


def layer_of(name: str) -> int | None:
    """``adam_m_W2`` -> 2; None for ``loss`` and the batch."""
    return parse(name).layer


def is_weight_shaped(name: str) -> bool:
    return parse(name).weight_shaped
