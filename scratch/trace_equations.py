"""What a trace tensor means in one run: the scratch function that produces it, and its
equation with the run's layers, activations, loss and optimizer filled in.

``trace_schema.py`` names every tensor and says what kind it is; this module writes each one's
equation for a particular network and optimizer (``describe``), where one name stands for
different equations: the top layer's error term comes from the loss, a batch-normalized
layer's from its normalization, a dropping layer's through its mask. The walkthrough of a
report and the "look at" line of a failure read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scratch.trace_schema import (
    BATCH_NORM_BACKWARD,
    ERROR_TERM,
    FORWARD,
    GRADIENTS,
    STAGES,
    Family,
    Network,
    OptimizerSettings,
    Tensor,
    parse,
)

PRE_ACTIVATION, ACTIVATION = FORWARD  # the families of Zl and Al
NORMALIZED_OUTPUT_ERROR = BATCH_NORM_BACKWARD[0]  # dNl

# The variants of a family that one name takes in some runs.
NORMALIZED_ACTIVATION = Family(
    "A", "forward", "layer", "(B, n_l)", "activation of layer l, of its normalized N_l",
    "activations.py:{act}", "A{l} = {act}(N{l})",
)  # fmt: skip

NORMALIZED_ERROR = Family(
    "dZ", "error_term", "layer", "(B, n_l)", "∂loss/∂Z_l, back through the batch normalization",
    "network.py:batch_norm_backward, network.py:backward",
    "dZ{l} = dxhat{l} / √(var{l} + ε) + dvar{l} · 2(Z{l} - mu{l})/B + dmu{l}/B",
)  # fmt: skip


OUTPUT_ERROR = Family(
    "dZ", "error_term", "layer", "(B, n_L)", "∂loss/∂Z_L, the error term of the top layer",
    "losses.py:{loss}, network.py:output_error, activations.py:{act}_derivative",
    "dZ{l} = ∂loss/∂A{l} * {act}'(Z{l})",
)  # fmt: skip
DROPPED_ERROR = Family(
    "dZ", "error_term", "layer", "(B, n_l)",
    "∂loss/∂Z_l, the error term of layer l, back through its dropout",
    "network.py:hidden_error, network.py:dropout_backward, activations.py:{act}_derivative, "
    "network.py:backward",
    "dZ{l} = ((dZ{next} @ W{next}.T) ⊙ M{l} / (1 - p)) * {act}'(Z{l})",
)  # fmt: skip

# The function of optimizers.py that holds each optimizer's rule (adamw is adam's rule after
# the decoupled decay that ``optimizers.update`` applies).
RULE_FUNCTIONS = {"sgd": "sgd", "momentum": "momentum", "nesterov": "nesterov", "adam": "adam"}
RULE_FUNCTIONS["adamw"] = "adam"
RULE_FUNCTIONS["rmsprop"] = "rmsprop"
# Each learning-rate schedule as an equation in t (the update's count, 1 for the first).
SCHEDULE_EQUATIONS = {
    "constant": "lr",
    "step": "lr·γ^⌊(t - 1) / lr_step_size⌋",
    "cosine": "lr·t/(w + 1) while t <= w, "
    "then lr_min + (lr - lr_min)·½(1 + cos(π·(t - 1 - w)/(D - w)))",
}
# Each optimizer's update as an equation in g (the gradient the optimizer sees) and θ.
UPDATE_RULES = {
    "sgd": "-lr·g",
    "momentum": "-lr·v,  v = μ·v + g",
    "nesterov": "-lr·(g + μ·v),  v = μ·v + g",
    "adam": "-lr·m̂/(√v̂ + ε),  m̂ = m/(1-β1^t),  v̂ = v/(1-β2^t)",
    "adamw": "-lr·λ·θ - lr·m̂/(√v̂ + ε)",
    "rmsprop": "-lr·g/(√v + ε),  v = α·v + (1-α)·(g)²",
}


@dataclass(frozen=True)
class Described:
    """A tensor of one run's trace, with its producer and equation filled in."""

    tensor: Tensor
    producer: str  # "scratch/network.py:hidden_error, scratch/activations.py:tanh_derivative"
    equation: str


def describe(name: str, network: Network, optimizer: OptimizerSettings) -> Described:
    """``name`` in a run of ``network`` with ``optimizer``: where it comes from, its equation."""
    tensor = parse(name)
    L, l = network.n_layers, tensor.layer
    dropped = bool(network.dropout)  # hidden layers drop units: layer l + 1 reads D_l
    normalized = bool(getattr(network, "batch_norm", False)) and l is not None and l < L
    family = tensor.family
    if family is ERROR_TERM and l == L:
        family = OUTPUT_ERROR
    elif family is ERROR_TERM and normalized:
        family = NORMALIZED_ERROR
    elif family is ERROR_TERM and dropped:
        family = DROPPED_ERROR
    elif family is ACTIVATION and normalized:
        family = NORMALIZED_ACTIVATION
    fill = {
        "l": l,
        "L": L,
        "next": (l or 0) + 1,
        "prev": "X" if l == 1 else f"{'D' if dropped else 'A'}{(l or 1) - 1}",
        "act": network.activation_of(l) if l else "",
        "loss": network.loss,
        "optimizer": optimizer.name,
        "rule_function": RULE_FUNCTIONS[optimizer.name],
        "p": tensor.parameter,
        "name": name,
        "rule": _rule(tensor, optimizer),
        "schedule": SCHEDULE_EQUATIONS.get(optimizer.lr_schedule, "lr"),
        "g": _gradient(tensor, optimizer),
    }
    producer = family.producer.format(**fill)
    # an optimizer's state reads the gradient it is given: clipped, with L2's term added
    equation = family.equation.replace("d{p}", "{g}").format(**fill)
    if family.kind == "optimizer_state":
        equation += _clipping(optimizer)
    if normalized and family is PRE_ACTIVATION:  # no bias before batch normalization
        equation = equation.removesuffix(f" + b{l}")
    if dropped and family is GRADIENTS["W"] and l > 1:  # which output of layer l-1 it reads
        producer += ", network.py:layer_output"
    if dropped and family is NORMALIZED_OUTPUT_ERROR:  # back through the dropout first
        producer += ", network.py:dropout_backward"
        equation = equation.replace("(dZ", "((dZ").replace(".T)", f".T) ⊙ M{l} / (1 - p))")
    if optimizer.clip_norm and STAGES[family.kind] == "update":  # the gradient it was given
        producer += ", optimizers.py:clip_by_global_norm"
    producer = ", ".join(f"scratch/{part}" for part in producer.split(", "))
    return Described(tensor, producer, equation)


def _gradient(tensor: Tensor, optimizer: OptimizerSettings) -> str:
    """The gradient the optimizer is given for one parameter, as this run forms it: scaled
    by the clipping factor s, plus L2's λ·θ on the parameters that decay (the weights)."""
    p = tensor.parameter
    if p is None:
        return ""
    g = f"s·d{p}" if optimizer.clip_norm else f"d{p}"
    if optimizer.l2 and tensor.decays:
        return f"({g} + l2·{p})"
    return f"({g})" if optimizer.clip_norm else g


def _clipping(optimizer: OptimizerSettings) -> str:
    return ",  s = min(1, clip_norm/(grad_norm + 1e-6))" if optimizer.clip_norm else ""


def _rule(tensor: Tensor, optimizer: OptimizerSettings) -> str:
    """The update rule written out for one parameter: L2 and decoupled decay touch only the
    parameters that decay (the weights); a schedule's lr is the one in effect at update t."""
    p = tensor.parameter
    if p is None:
        return ""
    name = optimizer.name
    rule = UPDATE_RULES["adam" if name == "adamw" and not tensor.decays else name]
    rule = re.sub(r"\bg\b", _gradient(tensor, optimizer), rule).replace("θ", p)
    schedule = getattr(optimizer, "lr_schedule", "constant")
    if schedule != "constant":
        rule += f",  lr = {SCHEDULE_EQUATIONS[schedule]}"
    return rule + _clipping(optimizer)
