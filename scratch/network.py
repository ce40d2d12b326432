"""A multilayer perceptron and backpropagation on a mini-batch, one equation per function.

Shape letters, used in every docstring below:
    B    the batch size (rows of the mini-batch)
    L    the number of layers with weights; layer 0 is the input
    n_l  the width of layer l (n_0 = number of features, n_L = number of outputs)

Parameters are ``W1, b1, …, WL, bL`` with ``Wl: (n_{l-1}, n_l)`` and ``bl: (n_l,)``; a row of
a matrix is one example. The names match the math and the trace names of ``trace_schema.py``:
``Zl`` pre-activations, ``Al`` activations, ``dZl`` error terms (∂loss/∂Zl), ``dWl``, ``dbl``.

The 1/B of the mean lives in the loss's gradient ∂L/∂A_L (see ``losses.py``), so every
error term below already carries it and the weight gradient is a plain sum over the batch.

Batch normalization (``mlp.batch_norm``) sits in each hidden layer between the linear map and
the activation: Z_l is normalized with the batch's mean ``mul`` and variance ``varl`` into
``xhatl``, scaled and shifted into ``Nl`` = gammal ⊙ xhatl + betal, and A_l = g_l(N_l); the
running statistics move toward the batch's. Its backward pass couples every row of the batch
(``batch_norm_backward``, step by step; ``batch_norm_backward_compact``, the one-line form).
In evaluation (``evaluate``) it normalizes with the running statistics instead.

Dropout (``mlp.dropout`` = p > 0) acts in training on each hidden layer's output: the keep
mask ``Ml`` (B, n_l) of 0s and 1s, drawn per step (``dropout_masks``), gives ``Dl`` =
Al ⊙ Ml / (1 - p), which layer l + 1 reads in Al's place; the backward pass sends the error
back through the same mask. Without masks (evaluation) the network runs without dropout.
"""

from __future__ import annotations

import numpy as np

from scratch.activations import get_activation
from scratch.config import MLP
from scratch.losses import get_loss
from scratch.trace_schema import kind_of


def linear(A_prev: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Z_l = A_{l-1} @ W_l + b_l   (B, n_l) = (B, n_{l-1}) @ (n_{l-1}, n_l) + (n_l,);
    a batch-normalized layer has no b_l (None): Z_l = A_{l-1} @ W_l."""
    return A_prev @ W if b is None else A_prev @ W + b


DROPOUT_STREAM = 1


def dropout_masks(
    mlp: MLP, batch: int, seed: int, step: int, dtype: str = "float64"
) -> dict[str, np.ndarray]:
    """The keep masks of one training step: Ml (B, n_l) for every hidden layer l = 1..L-1.

    rng = numpy.random.default_rng([seed, step, 1]);  for l = 1..L-1, in order:
    U_l = rng.random((B, n_l)) uniform on [0, 1),  M_l = 1 where U_l >= p, else 0.
    Each unit is kept with probability 1 - p, independently; a step's masks depend on the
    run's seed and the step's number alone, so every engine can be given the same ones.
    (The last 1 names the stream: NumPy seeds [seed, 0] as it seeds [seed], which is the
    batch schedule's generator.)
    """
    rng = np.random.default_rng([seed, step, DROPOUT_STREAM])
    return {
        f"M{l}": (rng.random((batch, mlp.sizes[l])) >= mlp.dropout).astype(dtype)
        for l in range(1, mlp.n_layers)
    }


def dropout(A: np.ndarray, M: np.ndarray, p: float) -> np.ndarray:
    """D_l = A_l ⊙ M_l / (1 - p)   (B, n_l): inverted dropout, so that the expected value of
    each unit's output is its activation, and evaluation needs no rescaling."""
    return A * M / (1.0 - p)


def dropout_backward(dD: np.ndarray, M: np.ndarray, p: float) -> np.ndarray:
    """dA_l = dD_l ⊙ M_l / (1 - p)   (B, n_l): a dropped unit passes no error back."""
    return dD * M / (1.0 - p)


def batch_norm(Z: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> dict:
    """Batch normalization in training, over the batch's rows (μ, σ² and x̂ per unit):

    mu = (1/B) Σ_i Z_i   (n_l,);   var = (1/B) Σ_i (Z_i - mu)²   (n_l,), biased;
    xhat = (Z - mu) / √(var + ε)   (B, n_l);   N = gamma ⊙ xhat + beta   (B, n_l).
    """
    mu = Z.mean(axis=0)
    var = ((Z - mu) ** 2).mean(axis=0)
    xhat = (Z - mu) / np.sqrt(var + eps)
    return {"mu": mu, "var": var, "xhat": xhat, "N": gamma * xhat + beta}


def running_stats(
    mean: np.ndarray, var: np.ndarray, mu: np.ndarray, var_B: np.ndarray, B: int, m: float
) -> tuple[np.ndarray, np.ndarray]:
    """The running statistics after a step (PyTorch's convention: m weighs the batch, and
    the variance kept is the unbiased one):

    mean ← (1 - m)·mean + m·mu;   var ← (1 - m)·var + m·var_B·B/(B - 1)   (n_l,)."""
    return (1 - m) * mean + m * mu, (1 - m) * var + m * var_B * (B / (B - 1))


def batch_norm_eval(
    Z: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps
) -> np.ndarray:
    """N = gamma ⊙ (Z - mean) / √(var + ε) + beta   (B, n_l), with the running statistics."""
    return gamma * (Z - mean) / np.sqrt(var + eps) + beta


def forward(
    mlp: MLP,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    masks: dict | None = None,
    running: dict | None = None,
) -> dict[str, np.ndarray]:
    """The forward pass in training, recording Z1, A1, …, ZL, AL in dataflow order.

    A_0 = X   (B, n_0);   for l = 1..L:  Z_l = A_{l-1} @ W_l + b_l,   A_l = g_l(Z_l)   (B, n_l).
    With batch normalization each hidden layer records mu_l, var_l, (with ``running``, the
    running statistics before the step: the ones after it,) xhat_l and N_l, and A_l = g_l(N_l).
    With ``masks`` (training with dropout), each hidden layer also records its mask M_l and
    D_l = dropout(A_l, M_l, p), and layer l + 1 reads D_l in A_l's place.
    """
    trace: dict[str, np.ndarray] = {}
    A = X  # (B, n_0)
    for l in range(1, mlp.n_layers + 1):
        Z = trace[f"Z{l}"] = linear(A, params[f"W{l}"], params.get(f"b{l}"))  # (B, n_l)
        if mlp.batch_norm and l < mlp.n_layers:
            bn = batch_norm(Z, params[f"gamma{l}"], params[f"beta{l}"], mlp.bn_eps)
            trace[f"mu{l}"], trace[f"var{l}"] = bn["mu"], bn["var"]
            if running is not None:
                old = running[f"running_mean{l}"], running[f"running_var{l}"]
                new = running_stats(*old, bn["mu"], bn["var"], len(Z), mlp.bn_momentum)
                trace[f"running_mean{l}"], trace[f"running_var{l}"] = new
            trace[f"xhat{l}"], trace[f"N{l}"] = bn["xhat"], bn["N"]
            Z = bn["N"]  # what the activation reads
        A = get_activation(mlp.activation_of(l)).forward(Z)  # (B, n_l)
        trace[f"A{l}"] = A
        if masks is not None and l < mlp.n_layers:
            M = trace[f"M{l}"] = masks[f"M{l}"]  # (B, n_l)
            A = trace[f"D{l}"] = dropout(A, M, mlp.dropout)  # (B, n_l)
    return trace


def evaluate(
    mlp: MLP, params: dict[str, np.ndarray], X: np.ndarray, running: dict | None = None
) -> np.ndarray:
    """The network's output A_L (n, n_L) in evaluation: no dropout, and batch normalization
    with the running statistics (``running``) instead of the batch's."""
    if not mlp.batch_norm:
        return forward(mlp, params, X)[f"A{mlp.n_layers}"]
    A = X
    for l in range(1, mlp.n_layers + 1):
        Z = linear(A, params[f"W{l}"], params.get(f"b{l}"))
        if l < mlp.n_layers:
            stats = running[f"running_mean{l}"], running[f"running_var{l}"]
            gamma, beta = params[f"gamma{l}"], params[f"beta{l}"]
            Z = batch_norm_eval(Z, gamma, beta, *stats, mlp.bn_eps)
        A = get_activation(mlp.activation_of(l)).forward(Z)
    return A


def layer_output(fwd: dict[str, np.ndarray], X: np.ndarray, l: int) -> np.ndarray:
    """What layer l + 1 reads: X for l = 0, D_l where layer l drops units, else A_l."""
    if l == 0:
        return X
    return fwd[f"D{l}"] if f"D{l}" in fwd else fwd[f"A{l}"]


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
    dZ_next: np.ndarray,
    W_next: np.ndarray,
    Z: np.ndarray,
    A: np.ndarray,
    act: str,
    dropped: tuple[np.ndarray, float] | None = None,
) -> np.ndarray:
    """dZ_l = (dZ_{l+1} @ W_{l+1}.T) * g_l'(Z_l)

    (B, n_l) = ((B, n_{l+1}) @ (n_{l+1}, n_l)) * (B, n_l)

    ``dropped`` = (M_l, p) where layer l drops units: the product is ∂loss/∂D_l, and goes
    back through the dropout first: dZ_l = dropout_backward(dZ_{l+1} @ W_{l+1}.T, M_l, p)
    * g_l'(Z_l), with g_l' at A_l, the activation before dropout.
    """
    dA = dZ_next @ W_next.T  # ∂loss/∂A_l: (B, n_{l+1}) @ (n_{l+1}, n_l)
    if dropped is not None:  # it was ∂loss/∂D_l
        dA = dropout_backward(dA, *dropped)
    return dA * get_activation(act).derivative(Z, A)


def batch_norm_backward(
    dN: np.ndarray,
    Z: np.ndarray,
    mu: np.ndarray,
    var: np.ndarray,
    xhat: np.ndarray,
    gamma: np.ndarray,
    eps: float,
) -> dict[str, np.ndarray]:
    """Back through batch normalization, step by step, from dN = ∂loss/∂N (B, n_l):

    dgamma = Σ_i dN ⊙ xhat   (n_l,);   dbeta = Σ_i dN   (n_l,);   dxhat = dN ⊙ gamma   (B, n_l)
    dvar = Σ_i dxhat ⊙ (Z - mu) · (-½)(var + ε)^(-3/2)   (n_l,)
    dmu  = Σ_i -dxhat / √(var + ε)  +  dvar · (-2/B) Σ_i (Z - mu)   (n_l,)
    dZ   = dxhat / √(var + ε)  +  dvar · 2(Z - mu)/B  +  dmu / B   (B, n_l)

    mu and var depend on every row, so each row's dZ depends on every row's dN.
    """
    B = Z.shape[0]
    centered = Z - mu  # (B, n_l)
    inv_std = 1.0 / np.sqrt(var + eps)  # (n_l,)
    dxhat = dN * gamma
    # Σ dxhat ⊙ (Z - mu) · (var + ε)^(-3/2), written as Σ dxhat ⊙ xhat · (var + ε)^(-1): the
    # same number, without the product of two large factors (in float32 a wide Z overflowed)
    dvar = (dxhat * xhat).sum(axis=0) * -0.5 * inv_std**2
    dmu = -(dxhat * inv_std).sum(axis=0) + dvar * -2.0 * centered.sum(axis=0) / B
    dZ = dxhat * inv_std + dvar * 2.0 * centered / B + dmu / B
    return {
        "dgamma": (dN * xhat).sum(axis=0),
        "dbeta": dN.sum(axis=0),
        "dxhat": dxhat,
        "dvar": dvar,
        "dmu": dmu,
        "dZ": dZ,
    }


def batch_norm_backward_compact(
    dN: np.ndarray, xhat: np.ndarray, var: np.ndarray, gamma: np.ndarray, eps: float
) -> np.ndarray:
    """dZ in one line: gamma / (B·√(var + ε)) ⊙ (B·dN - Σ_i dN - xhat ⊙ Σ_i (dN ⊙ xhat)).
    The same as ``batch_norm_backward``'s dZ (a test holds them equal)."""
    B = dN.shape[0]
    total, along = dN.sum(axis=0), (dN * xhat).sum(axis=0)
    return gamma / (B * np.sqrt(var + eps)) * (B * dN - total - xhat * along)


BN_GRADIENTS = ("dgamma", "dbeta", "dxhat", "dvar", "dmu")  # in the trace's order


def backward(
    mlp: MLP,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    fwd: dict[str, np.ndarray],
    dA_L: np.ndarray,
) -> dict[str, np.ndarray]:
    """The backward pass: dZL, dWL, dbL, …, dZ1, dW1, db1 in dataflow order.

    dZ_L = dA_L * g_L'(Z_L);  for l = L..1:  dW_l = A_{l-1}.T @ dZ_l,  db_l = Σ_i dZ_l,
    and, below the top, dZ_{l-1} = (dZ_l @ W_l.T) * g_{l-1}'(Z_{l-1}) (through layer l-1's
    dropout mask where it has one); A_{l-1} is D_{l-1} there.
    """
    L = mlp.n_layers
    grads: dict[str, np.ndarray] = {}
    dZ = output_error(dA_L, fwd[f"Z{L}"], fwd[f"A{L}"], mlp.activation_of(L))  # (B, n_L)
    for l in range(L, 0, -1):
        A_prev = layer_output(fwd, X, l - 1)  # (B, n_{l-1})
        grads[f"dZ{l}"] = dZ
        grads[f"dW{l}"] = weight_grad(A_prev, dZ)  # (n_{l-1}, n_l)
        if f"b{l}" in params:  # not in a batch-normalized layer
            grads[f"db{l}"] = bias_grad(dZ)  # (n_l,)
        if l > 1:
            mask = fwd.get(f"M{l - 1}")
            normalized = f"N{l - 1}" in fwd  # the activation read N_{l-1}
            dZ = hidden_error(
                dZ,
                params[f"W{l}"],
                fwd[f"N{l - 1}"] if normalized else fwd[f"Z{l - 1}"],
                fwd[f"A{l - 1}"],
                mlp.activation_of(l - 1),
                None if mask is None else (mask, mlp.dropout),
            )  # (B, n_{l-1}): dZ, or dN of a batch-normalized layer
            if normalized:
                k = l - 1
                bn = batch_norm_backward(
                    dZ,
                    fwd[f"Z{k}"],
                    fwd[f"mu{k}"],
                    fwd[f"var{k}"],
                    fwd[f"xhat{k}"],
                    params[f"gamma{k}"],
                    mlp.bn_eps,
                )
                grads[f"dN{k}"] = dZ
                grads.update({f"{name}{k}": bn[name] for name in BN_GRADIENTS})
                dZ = bn["dZ"]
    return grads


def forward_backward(
    mlp: MLP,
    params: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    masks: dict | None = None,
    running: dict | None = None,
) -> dict[str, np.ndarray]:
    """One batch's forward values, loss and gradients, as a trace in dataflow order
    (``masks``: the step's dropout masks, in training with dropout; ``running``: the running
    statistics before the step, with batch normalization)."""
    fwd = forward(mlp, params, X, masks, running)
    loss, dA_L = loss_and_output_grad(mlp, fwd[f"A{mlp.n_layers}"], Y)
    return {**fwd, "loss": np.asarray(loss), **backward(mlp, params, X, fwd, dA_L)}


def forward_backward_per_example(
    mlp: MLP, params: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, masks: dict | None = None
) -> dict[str, np.ndarray]:
    """The same trace, computed literally one example at a time.

    for i = 1..B:  forward x_i (1, n_0), take its loss ℓ_i and error terms dZ_l^(i), and
    accumulate dW_l += dW_l^(i), db_l += db_l^(i).   Then loss = (1/B) Σ ℓ_i,
    dW_l = (1/B) Σ_i dW_l^(i), db_l = (1/B) Σ_i db_l^(i), and row i of the batch's dZ_l is
    dZ_l^(i) / B. This must equal ``forward_backward`` (the vectorized form). Example i
    takes row i of each dropout mask.
    """
    if mlp.batch_norm:
        raise ValueError(
            "batch normalization couples the rows of a batch: it has no per-example form "
            "(batch_norm_backward_compact is its other form)"
        )
    B = X.shape[0]

    def row(i: int) -> dict | None:  # example i's own row of each mask
        return None if masks is None else {k: m[i : i + 1] for k, m in masks.items()}

    rows = [forward_backward(mlp, params, X[i : i + 1], Y[i : i + 1], row(i)) for i in range(B)]
    trace: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if kind_of(name) in ("forward", "dropout_mask"):  # each example's own row
            trace[name] = np.concatenate([r[name] for r in rows])
        elif kind_of(name) == "error_term":  # each example's own row, weighted 1/B
            trace[name] = np.concatenate([r[name] for r in rows]) / B
        else:  # loss, dW, db: average of the per-example values
            trace[name] = sum(r[name] for r in rows) / B
    return trace
