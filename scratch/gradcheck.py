"""Central finite differences: a third judge of the gradients that needs no framework.

    ∂L/∂θ_j ≈ (L(θ + h·e_j) - L(θ - h·e_j)) / (2h)

The truncation error is O(h²) and the rounding error O(ε_machine / h); in float64,
h = 1e-6 balances the two at about 1e-10 relative error for smooth losses. Run it in
float64 only: in float32 the rounding term alone is about 1e-1.

Error terms dZ_l are checked the same way by perturbing Z_l itself and running the rest
of the forward pass from there. With dropout the step's masks are held fixed: the loss is
then a smooth function of the parameters again, and its derivative is what backprop gives.
"""

from __future__ import annotations

import numpy as np

from scratch.activations import get_activation
from scratch.config import MLP
from scratch.network import batch_norm, dropout, forward, linear, loss_and_output_grad
from scratch.trace_schema import layer_parameters

Params = dict[str, np.ndarray]


def loss_from_layer(
    mlp: MLP, params: Params, Z: np.ndarray, layer: int, Y: np.ndarray, masks: dict | None = None
) -> float:
    """The batch loss as a function of layer ``layer``'s pre-activation Z_l   (B, n_l), with
    the dropout ``masks`` fixed.

    Layer 0 has no activation: there Z is the input X itself.
    """
    A = Z if layer == 0 else _output(mlp, layer, Z, masks, params)
    for l in range(layer + 1, mlp.n_layers + 1):
        A = _output(mlp, l, linear(A, params[f"W{l}"], params.get(f"b{l}")), masks, params)
    return float(loss_and_output_grad(mlp, A, Y)[0])


def _output(mlp: MLP, l: int, Z: np.ndarray, masks: dict | None, params: Params) -> np.ndarray:
    """What layer l passes on: g_l(Z_l) (of its batch normalization, in training, where it
    has one), through its dropout mask where it has one."""
    hidden = l < mlp.n_layers
    if mlp.batch_norm and hidden:
        Z = batch_norm(Z, params[f"gamma{l}"], params[f"beta{l}"], mlp.bn_eps)["N"]
    A = get_activation(mlp.activation_of(l)).forward(Z)
    return dropout(A, masks[f"M{l}"], mlp.dropout) if masks and hidden else A


def central_difference(f, x: np.ndarray, h: float) -> np.ndarray:
    """(f(x + h e_j) - f(x - h e_j)) / 2h for every entry j of x (x is restored after)."""
    grad = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        saved = x[j]
        x[j] = saved + h
        up = f()
        x[j] = saved - h
        down = f()
        x[j] = saved
        grad[j] = (up - down) / (2 * h)
    return grad


def numerical_gradients(
    mlp: MLP,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    h: float = 1e-6,
    masks: dict | None = None,
) -> dict[str, np.ndarray]:
    """Finite-difference dZ_l, dW_l and db_l (and dgamma_l, dbeta_l with batch
    normalization) for every layer, under the trace's names (``masks``: the step's dropout
    masks, held fixed)."""
    if any(p.dtype != np.float64 for p in params.values()) or X.dtype != np.float64:
        raise ValueError("finite differences need float64 parameters and inputs")
    work = {p: v.copy() for p, v in params.items()}
    fwd = forward(mlp, work, X, masks)
    numeric: dict[str, np.ndarray] = {}
    for l in range(mlp.n_layers, 0, -1):
        Z = fwd[f"Z{l}"].copy()
        numeric[f"dZ{l}"] = central_difference(
            lambda Z=Z, l=l: loss_from_layer(mlp, work, Z, l, Y, masks), Z, h
        )
        for kind in layer_parameters(mlp.n_layers, mlp.batch_norm, l):
            p = f"{kind.letter}{l}"
            numeric[f"d{p}"] = central_difference(
                lambda: loss_from_layer(mlp, work, X, 0, Y, masks), work[p], h
            )
    return numeric
