"""The equation walkthrough: the first mini-batch's step, equation by equation, every engine.

For each tensor of the first step's trace, in dataflow order: its equation, its shape, the
first few numbers from each engine side by side, and the largest difference from scratch.
"""

from __future__ import annotations

import re

import numpy as np

from comparisons.tolerances import kind_of, layer_of
from scratch.network import MLP
from scratch.optimizers import Optimizer

N_VALUES = 3  # numbers shown per engine and tensor

STAGES = {
    "forward": "forward",
    "loss": "loss",
    "error_term": "error terms",
    "gradient": "gradients",
    "update": "update",
    "optimizer_state": "update",
    "parameter": "update",
}

UPDATE_RULES = {
    "sgd": "-lr·g",
    "momentum": "-lr·v,  v = μ·v + g",
    "nesterov": "-lr·(g + μ·v),  v = μ·v + g",
    "adam": "-lr·m̂/(√v̂ + ε),  m̂ = m/(1-β1^t),  v̂ = v/(1-β2^t)",
    "adamw": "-lr·λ·θ - lr·m̂/(√v̂ + ε)",
}


def equation(tensor: str, mlp: MLP, optimizer: Optimizer) -> str:
    """The equation that produces ``tensor``, with the layer's numbers and activations."""
    kind, l = kind_of(tensor), layer_of(tensor)
    L = mlp.n_layers
    prev = "X" if l == 1 else f"A{(l or 1) - 1}"
    if kind == "forward":
        if tensor.startswith("Z"):
            return f"Z{l} = {prev} @ W{l} + b{l}"
        return f"A{l} = {mlp.activation_of(l)}(Z{l})"
    if kind == "loss":
        return f"loss = mean over the batch of {mlp.loss}(A{L}, Y)"
    if kind == "error_term":
        if l == L:
            return f"dZ{L} = ∂loss/∂A{L} * {mlp.activation_of(L)}'(Z{L})"
        return f"dZ{l} = (dZ{l + 1} @ W{l + 1}.T) * {mlp.activation_of(l)}'(Z{l})"
    if kind == "gradient":
        if tensor.startswith("dW"):
            return f"dW{l} = {prev}.T @ dZ{l}"
        return f"db{l} = Σ over the batch of dZ{l}"
    if kind == "update":
        param = tensor[1:]
        g = f"(d{param} + l2·{param})" if optimizer.l2 and param.startswith("W") else f"d{param}"
        name = "adam" if optimizer.name == "adamw" and not param.startswith("W") else optimizer.name
        return f"{tensor} = " + re.sub(r"\bg\b", g, UPDATE_RULES[name]).replace("θ", param)
    if kind == "optimizer_state":
        name, param = tensor.rsplit("_", 1)
        g = f"d{param}"
        if name == "momentum":
            return f"{tensor} = μ·{tensor} + {g}"
        if name == "adam_m":
            return f"{tensor} = β1·{tensor} + (1-β1)·{g}"
        return f"{tensor} = β2·{tensor} + (1-β2)·{g}²"
    return f"{tensor} ← {tensor} + Δ{tensor}"


def walkthrough(
    traces: dict[str, dict[str, np.ndarray]], mlp: MLP, optimizer: Optimizer
) -> list[dict]:
    """One entry per tensor of scratch's first-step trace, engines side by side."""
    ours = traces["scratch"]
    rows = []
    for tensor, value in ours.items():
        values, max_abs = {}, {}
        for engine, trace in traces.items():
            theirs = trace.get(tensor)
            if theirs is None:
                continue
            values[engine] = [float(v) for v in np.ravel(theirs)[:N_VALUES]]
            if engine != "scratch" and np.shape(theirs) == np.shape(value):
                diff = np.abs(np.asarray(theirs, np.float64) - np.asarray(value, np.float64))
                max_abs[engine] = float(np.max(diff, initial=0.0))
        rows.append(
            {
                "tensor": tensor,
                "stage": STAGES[kind_of(tensor)],
                "kind": kind_of(tensor),
                "layer": layer_of(tensor),
                "equation": equation(tensor, mlp, optimizer),
                "shape": list(np.shape(value)),
                "values": values,
                "max_abs_vs_scratch": max_abs,
            }
        )
    return rows
