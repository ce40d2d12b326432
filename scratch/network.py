"""A multilayer perceptron and backpropagation on a mini-batch, one equation per function.

Shape letters, used in every docstring below:
    B    the batch size (rows of the mini-batch)
    L    the number of layers with weights; layer 0 is the input
    n_l  the width of layer l (n_0 = number of features, n_L = number of outputs)

Parameters are ``W1, b1, …, WL, bL`` with ``Wl: (n_{l-1}, n_l)`` and ``bl: (n_l,)``; a row of
a matrix is one example. The names match the math and the trace names of DESIGN.md:
``Zl`` pre-activations, ``Al`` activations, ``dZl`` error terms (∂loss/∂Zl), ``dWl``, ``dbl``.

The 1/B of the mean lives in the loss's gradient ∂L/∂A_L (see ``losses.py``), so every
error term below already carries it and the weight gradient is a plain sum over the batch.
"""

from __future__ import annotations

import numpy as np

from scratch.activations import get_activation
from scratch.config import MLP
from scratch.losses import get_loss
from scratch.trace_schema import kind_of


def linear(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Z_l = A_{l-1} @ W_l + b_l   (B, n_l) = (B, n_{l-1}) @ (n_{l-1}, n_l) + (n_l,)."""
    return A_prev @ W + b


def forward(mlp: MLP, params: dict[str, np.ndarray], X: np.ndarray) -> dict[str, np.ndarray]:
    """The forward pass, recording Z1, A1, …, ZL, AL in dataflow order.

    A_0 = X   (B, n_0);   for l = 1..L:  Z_l = A_{l-1} @ W_l + b_l,   A_l = g_l(Z_l)   (B, n_l)
    """
    trace: dict[str, np.ndarray] = {}
    A = X  # (B, n_0)
    for l in range(1, mlp.n_layers + 1):
        Z = linear(A, params[f"W{l}"], params[f"b{l}"])  # (B, n_l)
        A = get_activation(mlp.activation_of(l)).forward(Z)  # (B, n_l)
        trace[f"Z{l}"], trace[f"A{l}"] = Z, A
    return trace


def loss_and_output_grad(mlp: MLP, A_L: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """loss = mean over the batch of ℓ(A_L, Y);   dA_L = ∂loss/∂A_L   (B, n_L)."""
    return get_loss(mlp.loss).fn(A_L, Y)


def output_error(dA_L: np.ndarray, Z_L: np.ndarray, A_L: np.ndarray, act: str) -> np.ndarray:
    """dZ_L = dA_L * g_L'(Z_L)   (B, n_L)."""
    return dA_L * get_activation(act).derivative(Z_L, A_L)


def weight_grad(A_prev: np.ndarray, dZ: np.ndarray) -> np.ndarray:
    """dW_l = A_{l-1}.T @ dZ_l   (n_{l-1}, n_l) = (n_{l-1}, B) @ (B, n_l)."""
    return A_prev.T @ dZ


def bias_grad(dZ: np.ndarray) -> np.ndarray:
    """db_l = Σ_i dZ_l[i, :]   (n_l,): the bias touches every example, so sum over the batch."""
    return dZ.sum(axis=0)


def hidden_error(
    dZ_next: np.ndarray, W_next: np.ndarray, Z: np.ndarray, A: np.ndarray, act: str
) -> np.ndarray:
    """dZ_l = (dZ_{l+1} @ W_{l+1}.T) * g_l'(Z_l)

    (B, n_l) = ((B, n_{l+1}) @ (n_{l+1}, n_l)) * (B, n_l)
    """
    return (dZ_next @ W_next.T) * get_activation(act).derivative(Z, A)


def backward(
    mlp: MLP,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    fwd: dict[str, np.ndarray],
    dA_L: np.ndarray,
) -> dict[str, np.ndarray]:
    """The backward pass: dZL, dWL, dbL, …, dZ1, dW1, db1 in dataflow order.

    dZ_L = dA_L * g_L'(Z_L);  for l = L..1:  dW_l = A_{l-1}.T @ dZ_l,  db_l = Σ_i dZ_l,
    and, below the top, dZ_{l-1} = (dZ_l @ W_l.T) * g_{l-1}'(Z_{l-1}).
    """
    L = mlp.n_layers
    grads: dict[str, np.ndarray] = {}
    dZ = output_error(dA_L, fwd[f"Z{L}"], fwd[f"A{L}"], mlp.activation_of(L))  # (B, n_L)
    for l in range(L, 0, -1):
        A_prev = X if l == 1 else fwd[f"A{l - 1}"]  # (B, n_{l-1})
        grads[f"dZ{l}"] = dZ
        grads[f"dW{l}"] = weight_grad(A_prev, dZ)  # (n_{l-1}, n_l)
        grads[f"db{l}"] = bias_grad(dZ)  # (n_l,)
        if l > 1:
            dZ = hidden_error(
                dZ, params[f"W{l}"], fwd[f"Z{l - 1}"], fwd[f"A{l - 1}"], mlp.activation_of(l - 1)
            )  # (B, n_{l-1})
    return grads


def forward_backward(
    mlp: MLP, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray
) -> dict[str, np.ndarray]:
    """One batch's forward values, loss and gradients, as a trace in dataflow order."""
    fwd = forward(mlp, params, X)
    loss, dA_L = loss_and_output_grad(mlp, fwd[f"A{mlp.n_layers}"], Y)
    return {**fwd, "loss": np.asarray(loss), **backward(mlp, params, X, fwd, dA_L)}


def forward_backward_per_example(
    mlp: MLP, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray
) -> dict[str, np.ndarray]:
    """The same trace, computed literally one example at a time.

    for i = 1..B:  forward x_i (1, n_0), take its loss ℓ_i and error terms dZ_l^(i), and
    accumulate dW_l += dW_l^(i), db_l += db_l^(i).   Then loss = (1/B) Σ ℓ_i,
    dW_l = (1/B) Σ_i dW_l^(i), db_l = (1/B) Σ_i db_l^(i), and row i of the batch's dZ_l is
    dZ_l^(i) / B. This must equal ``forward_backward`` (the vectorized form).
    """
    B = X.shape[0]
    rows = [forward_backward(mlp, params, X[i : i + 1], Y[i : i + 1]) for i in range(B)]
    trace: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if kind_of(name) == "forward":  # each example's own row
            trace[name] = np.concatenate([r[name] for r in rows])
        elif kind_of(name) == "error_term":  # each example's own row, weighted 1/B
            trace[name] = np.concatenate([r[name] for r in rows]) / B
        else:  # loss, dW, db: average of the per-example values
            trace[name] = sum(r[name] for r in rows) / B
    return trace
