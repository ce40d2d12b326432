"""Allowances from roundoff: how far two correct engines' values of each tensor may be apart.

For every tensor of a step the oracle bounds, elementwise, how far one engine's floating-point
value can be from the exact value, following the operations that compute it (first-order
forward error analysis, with u the dtype's unit roundoff and γ_n = n·u / (1 - n·u)):

    a product or sum of n terms   |fl(Σ x·y) - Σ x·y| <= γ_n·Σ|x|·|y|      (matmul, Σ over B)
    an error carried in           E_out = |∂out/∂in|·E_in                    (chain rule)
    a library function (exp, …)   its measured error, in units of its result (library_error.py)

evaluated on scratch's own operands (|A|ᵀ|dZ| for dW, Σ|dZ| for db, |A||W| for Z). So the
allowance scales with the magnitude of the terms, not of the result: a bias gradient that is
a sum of large terms cancelling to almost nothing is allowed its honest roundoff, and a tensor
whose terms do not cancel gets a bound of a few ulps times the number of terms. Two engines
may each be off by the bound, and the analysis is first order: ``Roundoff.safety``
(in ``tolerances.py``) covers both.

A wrong equation is off by O(1) of the tensor's terms; the bound is O(n·u) of them.
"""

from __future__ import annotations

import numpy as np

from comparisons.oracle.roundoff_terms import (
    Arrays,
    RoundoffStep,
    RoundoffSteps,
    gamma,
    library_term,
    matrices,
    row_sums,
    totals,
    transposed,
)
from comparisons.oracle.roundoff_update import update_errors
from comparisons.oracle.tolerances import ROUNDOFF, Roundoff
from scratch.config import MLP
from scratch.trace_schema import shape_of


def _slope(act: str, Z: np.ndarray, A: np.ndarray) -> np.ndarray | float:
    """|g'(Z)|: how much of Z's error reaches A."""
    if act == "sigmoid":
        return A * (1.0 - A)
    if act == "tanh":
        return 1.0 - A * A
    if act == "elu":  # e^Z below 0 (α = 1), 1 above
        return np.exp(np.minimum(Z, 0.0))
    return 1.0  # relu, leaky_relu, identity: Lipschitz 1 (a kink moves A by at most |ΔZ|)


def _slope_error(act: str, Z: np.ndarray, A: np.ndarray, E_Z, E_A, u: float) -> np.ndarray:
    """The error of g'(Z) as an engine computes it: from A's error (g' is a function of A for
    sigmoid and tanh; 1 - A² cancels near |A| = 1, so A²'s rounding counts whole), or, at a
    kink, the slope's jump where Z's sign is uncertain (|Z| <= E_Z, E_Z > 0: either side is
    honest). Where E_Z is 0, Z is exact in every engine (a dropped row times a zero bias is
    exactly 0): at Z == 0 there, the convention for g'(0) decides and nothing is allowed for
    it (the README's conventions table)."""
    if act == "sigmoid":
        return np.abs(1.0 - 2.0 * A) * E_A + 2.0 * u * A * (1.0 - A)
    if act == "tanh":
        return 2.0 * np.abs(A) * E_A + 2.0 * u * A * A
    if act in ("relu", "leaky_relu"):
        jump = 1.0 if act == "relu" else 0.99
        return np.where((np.abs(Z) <= E_Z) & (E_Z > 0), jump, 0.0)
    if act == "elu":
        # below 0, e^Z (scratch, PyTorch) or A + 1 (JAX's autodiff of expm1): A's error, which
        # holds e^Z·E_Z and the library's ulps of A, and the sum's rounding. Continuous at 0
        # (both sides 1): a Z of uncertain sign moves g' by at most |Z| <= E_Z, within E_A.
        return np.where(Z > 0, 0.0, E_A + 2.0 * u * (np.abs(A) + 1.0))
    return np.zeros_like(Z)


# The activations computed by a library function, and the function's name in the measured
# table (library_error.json).
LIBRARY = {"sigmoid": "logistic", "tanh": "tanh", "elu": "expm1"}


def _stable_sigmoid(Z: np.ndarray) -> np.ndarray:
    E = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0, E) / (1.0 + E)


def _softmax(Z: np.ndarray) -> np.ndarray:
    E = np.exp(Z - Z.max(axis=-1, keepdims=True))
    return E / E.sum(axis=-1, keepdims=True)


def allowances(step: RoundoffStep, trace: Arrays, dtype: str) -> Arrays:
    """The allowed |scratch - reference| of every tensor of scratch's ``trace``, elementwise."""
    stacked = {k: np.asarray(v)[np.newaxis] for k, v in trace.items()}
    return {
        k: v[0] for k, v in stacked_allowances(RoundoffSteps.stack([step]), stacked, dtype).items()
    }


def stacked_allowances(steps: RoundoffSteps, traces: Arrays, dtype: str) -> Arrays:
    """``allowances`` of K steps at once: ``traces`` are scratch's traces stacked as the
    steps are, and so are the allowances returned.

    Inside, every array is a stack of matrices: a tensor of shape (K, B, n) stays so, a
    vector (a bias, its gradient: (K, n)) becomes a row (K, 1, n), a number (the loss)
    (K, 1, 1), so that every product and sum below broadcasts within each step and never
    across steps. ``_T`` transposes each step's matrix, ``_rows`` sums over its rows."""
    r = ROUNDOFF[dtype]
    u = r.unit
    mlp, L = steps.mlp, steps.mlp.n_layers
    f64 = {k: matrices(v) for k, v in traces.items()}
    W = {k: matrices(v) for k, v in steps.params.items()}
    X = np.asarray(steps.X, np.float64)
    E: Arrays = {}

    # forward: Z_l = A_{l-1} @ W_l + b_l;  A_l = g(Z_l);  with dropout D_l = A_l ⊙ M_l/(1 - p)
    A_prev, E_prev = X, np.zeros_like(X)
    scales = _dropout_scales(mlp, f64)
    for l in range(1, L + 1):
        n = A_prev.shape[-1] + 1
        absW = np.abs(W[f"W{l}"])
        bias = np.abs(W[f"b{l}"]) if f"b{l}" in W else 0.0  # none before batch norm
        E[f"Z{l}"] = (gamma(n, u) * np.abs(A_prev) + E_prev) @ absW + gamma(n, u) * bias
        act = mlp.activation_of(l)
        Z, A = f64[f"Z{l}"], f64[f"A{l}"]
        into = f"Z{l}"  # what the activation reads: Z_l, or N_l where it is batch-normalized
        if f"N{l}" in f64:
            E.update(_batch_norm(steps, f64, W, E, l, r))
            Z, into = f64[f"N{l}"], f"N{l}"
        own = (library_term(r, LIBRARY[act]) if act in LIBRARY else u) * np.abs(A)
        E[f"A{l}"] = _slope(act, Z, A) * E[into] + own
        A_prev, E_prev = A, E[f"A{l}"]
        if l in scales:  # the mask is exact; the scaling by 1/(1 - p) rounds
            E[f"M{l}"] = np.zeros_like(A)
            A_prev = f64[f"D{l}"]
            E_prev = E[f"D{l}"] = scales[l] * E_prev + DROPOUT_ROUNDINGS * u * np.abs(A_prev)

    # the loss and the top layer's error term, per loss head
    E["loss"], E[f"dZ{L}"] = _head(steps, f64, E, r)

    # backward, from the top down
    B = X.shape[-2]
    for l in range(L, 0, -1):
        dZ, E_dZ = f64[f"dZ{l}"], E[f"dZ{l}"]
        below = f"D{l - 1}" if l - 1 in scales else f"A{l - 1}"  # what layer l read
        A_prev = X if l == 1 else f64[below]
        E_Aprev = np.zeros_like(X) if l == 1 else E[below]
        E[f"dW{l}"] = (
            transposed(gamma(B, u) * np.abs(A_prev) + E_Aprev) @ np.abs(dZ)
            + transposed(np.abs(A_prev)) @ E_dZ
        )
        E[f"db{l}"] = gamma(B, u) * row_sums(np.abs(dZ)) + row_sums(E_dZ)
        if l > 1:
            absW = np.abs(W[f"W{l}"])
            P = dZ @ transposed(W[f"W{l}"])  # (K, B, n_{l-1}), before the slope
            E_P = (gamma(dZ.shape[-1], u) * np.abs(dZ) + E_dZ) @ transposed(absW)
            if l - 1 in scales:  # back through the dropout: P ⊙ M/(1 - p)
                P = P * scales[l - 1]
                E_P = E_P * scales[l - 1] + DROPOUT_ROUNDINGS * u * np.abs(P)
            act = mlp.activation_of(l - 1)
            into = f"N{l - 1}" if f"N{l - 1}" in f64 else f"Z{l - 1}"  # the activation's input
            Zp, Ap = f64[into], f64[f"A{l - 1}"]
            slope = _slope(act, Zp, Ap)
            E_in = (
                E_P * slope
                + np.abs(P) * _slope_error(act, Zp, Ap, E[into], E[f"A{l - 1}"], u)
                + r.library_ulps * u * np.abs(P * slope)
            )
            if into == f"Z{l - 1}":
                E[f"dZ{l - 1}"] = E_in
            else:  # dN, then back through the batch normalization to dZ
                E[f"dN{l - 1}"] = E_in
                E.update(_batch_norm_backward(steps, f64, W, E, l - 1, r))

    E.update(update_errors(steps, f64, W, E, r))
    # Below the smallest normal number a value's error is absolute, not relative (and an
    # engine may flush such a value to zero): every allowance is at least that.
    tiny = float(np.finfo(dtype).tiny)
    K = X.shape[0]
    out = {}
    for name in traces:
        if name in E:  # in the shape the schema gives the tensor, whatever scratch's is
            e = E[name] if E[name].shape[0] == K else np.broadcast_to(E[name], (K, 1, 1))
            out[name] = (r.safety * (e + tiny)).reshape((K, *shape_of(name, mlp.sizes, B)))
    return out


def _batch_norm(
    steps: RoundoffSteps, f64: Arrays, W: Arrays, E: Arrays, l: int, r: Roundoff
) -> Arrays:
    """The errors of layer l's batch normalization in training, from Z_l's: the batch mean
    and the (two-pass) variance are sums of B terms; 1/√(var + ε) carries half var's relative
    error and a few roundings; x̂ = (Z - μ)·s, N = γ·x̂ + β (PyTorch fuses them as
    Z·(γs) + (β - μγs), whose rounding, u·|Z|·|γ|s, E_Z already exceeds); the running
    statistics move by m times the batch's."""
    u = r.unit
    mlp = steps.mlp
    Z, E_Z = f64[f"Z{l}"], E[f"Z{l}"]
    B = Z.shape[-2]
    mu, var, xhat, N = (f64[f"{n}{l}"] for n in ("mu", "var", "xhat", "N"))
    C = Z - mu
    E_mu = (gamma(B, u) * row_sums(np.abs(Z)) + row_sums(E_Z)) / B
    E_C = E_Z + E_mu + u * np.abs(C)
    E_var = (gamma(B + 1, u) * row_sums(C * C) + row_sums(2.0 * np.abs(C) * E_C)) / B
    s, E_s = _inv_std(var, E_var, mlp.bn_eps, r)
    E_xhat = np.abs(C) * E_s + s * E_C + u * np.abs(xhat)
    absgamma = np.abs(W[f"gamma{l}"])
    out = {f"mu{l}": E_mu, f"var{l}": E_var, f"xhat{l}": E_xhat}
    out[f"N{l}"] = absgamma * E_xhat + u * (np.abs(absgamma * xhat) + np.abs(N))
    m, unbiased = mlp.bn_momentum, B / (B - 1)
    old_mean = np.abs(matrices(steps.state[f"running_mean{l}"]))
    old_var = np.abs(matrices(steps.state[f"running_var{l}"]))
    out[f"running_mean{l}"] = m * E_mu + 3.0 * u * ((1 - m) * old_mean + m * np.abs(mu))
    out[f"running_var{l}"] = m * unbiased * E_var + 4.0 * u * (
        (1 - m) * old_var + m * unbiased * var
    )
    return out


def _inv_std(var: np.ndarray, E_var: np.ndarray, eps: float, r: Roundoff):
    """s = 1/√(var + ε) and its error: half var's relative error, the sum's and the root's
    and the quotient's roundings, and a library's few ulps (an rsqrt)."""
    s = 1.0 / np.sqrt(var + eps)
    return s, s * (E_var / (2.0 * (var + eps)) + 3.0 * r.unit + library_term(r, "rsqrt"))


def _batch_norm_backward(
    steps: RoundoffSteps, f64: Arrays, W: Arrays, E: Arrays, l: int, r: Roundoff
) -> Arrays:
    """The errors of the step-by-step backward pass through layer l's batch normalization,
    from dN's (``network.py:batch_norm_backward``'s equations, term by term). PyTorch's
    BatchNorm1d takes the compact form, γs/B·(B·dN - ΣdN - x̂·Σ(dN·x̂)): its terms are these
    terms regrouped, of the same magnitudes, so the bound holds for it too."""
    Z, mu, var, xhat = (f64[f"{n}{l}"] for n in ("Z", "mu", "var", "xhat"))
    dN, dxhat, dvar, dmu = (f64[f"{n}{l}"] for n in ("dN", "dxhat", "dvar", "dmu"))
    E_Z, E_mu, E_var, E_xhat, E_dN = (E[f"{n}{l}"] for n in ("Z", "mu", "var", "xhat", "dN"))
    u = r.unit
    B = Z.shape[-2]
    g = gamma(B, u)
    C = Z - mu
    E_C = E_Z + E_mu + u * np.abs(C)
    absgamma = np.abs(W[f"gamma{l}"])
    out = {
        f"dgamma{l}": g * row_sums(np.abs(dN * xhat))
        + row_sums(E_dN * np.abs(xhat) + np.abs(dN) * E_xhat),
        f"dbeta{l}": g * row_sums(np.abs(dN)) + row_sums(E_dN),
    }
    E_dxhat = absgamma * E_dN + u * np.abs(dxhat)
    s, E_s = _inv_std(var, E_var, steps.mlp.bn_eps, r)
    T = row_sums(dxhat * C)
    E_T = g * row_sums(np.abs(dxhat * C)) + row_sums(E_dxhat * np.abs(C) + np.abs(dxhat) * E_C)
    E_dvar = 0.5 * (E_T * s**3 + np.abs(T) * 3.0 * s * s * E_s) + 3.0 * u * np.abs(dvar)
    S = row_sums(dxhat)
    E_S = g * row_sums(np.abs(dxhat)) + row_sums(E_dxhat)
    sum_C, E_sum_C = row_sums(C), g * row_sums(np.abs(C)) + row_sums(E_C)
    E_dmu = (
        s * E_S
        + np.abs(S) * E_s
        + (2.0 / B) * (E_dvar * np.abs(sum_C) + np.abs(dvar) * E_sum_C)
        + 3.0 * u * np.abs(dmu)
    )
    terms = np.abs(dxhat * s) + np.abs(dvar * 2.0 * C / B) + np.abs(dmu / B)
    out[f"dxhat{l}"], out[f"dvar{l}"], out[f"dmu{l}"] = E_dxhat, E_dvar, E_dmu
    out[f"dZ{l}"] = (
        E_dxhat * s
        + np.abs(dxhat) * E_s
        + (2.0 / B) * (E_dvar * np.abs(C) + np.abs(dvar) * E_C)
        + E_dmu / B
        + 4.0 * u * terms
    )
    return out


# D = A ⊙ M / (1 - p) rounds 1 - p, and then once (scratch: (A·M)/(1 - p)) or twice
# (PyTorch's dropout form A·(M/(1 - p)), JAX's where(M, A/(1 - p), 0)): three roundings of D.
DROPOUT_ROUNDINGS = 3.0


def _dropout_scales(mlp: MLP, f64: Arrays) -> dict[int, np.ndarray]:
    """Each dropping layer's M_l / (1 - p), from the masks in the trace: {l: (K, B, n_l)}."""
    if not mlp.dropout:
        return {}
    keep = 1.0 - mlp.dropout
    return {l: f64[f"M{l}"] / keep for l in range(1, mlp.n_layers) if f"M{l}" in f64}


def _head(
    steps: RoundoffSteps, f64: Arrays, E: Arrays, r: Roundoff
) -> tuple[np.ndarray, np.ndarray]:
    """The loss's error and the top error term's, for the run's loss and output activation.

    Every loss here is a mean of non-negative terms, so the terms' magnitude is the loss
    itself; the logit losses add the rounding of their log-sum-exp, of the logits' size. The
    library functions' terms are measured (library_error.json): BCE with logits' loss as a
    softplus per |ℓ| + |z|, its gradient σ(z) - y per (σ + |y|)·(1 + |z|) (a log-sum-exp's
    derivative rounds at |z|'s scale); softmax's exponentials and log; BCE's log."""
    u, lib = r.unit, r.library_ulps * r.unit
    mlp, L = steps.mlp, steps.mlp.n_layers
    Y = matrices(steps.Y)
    Z, A, E_Z, E_A = f64[f"Z{L}"], f64[f"A{L}"], E[f"Z{L}"], E[f"A{L}"]
    loss, dZ = f64["loss"], f64[f"dZ{L}"]
    B, N = A.shape[-2], A.shape[-2] * A.shape[-1]  # rows, and elements of one step's A_L
    loss_lib = {
        "bce_logits": library_term(r, "softplus"),
        "softmax_cross_entropy": max(library_term(r, "exp"), library_term(r, "log")),
        "bce": max(library_term(r, "log"), library_term(r, "log1p")),
    }.get(mlp.loss, lib)
    own_loss = (gamma(N, u) + loss_lib) * np.abs(loss)
    if mlp.loss == "bce_logits":  # dZ = (σ(Z) - Y) / N
        P = _stable_sigmoid(Z)
        E_loss = totals(np.abs(P - Y) / N * E_Z) + own_loss + loss_lib * totals(np.abs(Z)) / N
        grad_lib = library_term(r, "logistic_grad") * (1.0 + np.abs(Z))
        E_dZ = (P * (1.0 - P) * E_Z + grad_lib * (P + np.abs(Y))) / N
    elif mlp.loss == "softmax_cross_entropy":  # dZ = (softmax(Z) - Y) / B
        P = _softmax(Z)
        largest = np.max(np.abs(Z), axis=-1, keepdims=True).mean(axis=-2, keepdims=True)
        E_loss = (
            totals(np.abs(P - Y) / B * E_Z) + own_loss + loss_lib * (largest + np.log(Z.shape[-1]))
        )
        # each probability: an exponential, a sum's and a quotient's roundings
        P_lib = library_term(r, "exp") + 2.0 * u
        E_dZ = (2.0 * P * E_Z.max(axis=-1, keepdims=True) + P_lib * (P + np.abs(Y))) / B
    else:  # mse (any output) or bce (sigmoid output): dZ = ∂loss/∂A * g'(Z)
        act = mlp.activation_of(L)
        slope = _slope(act, Z, A)
        if mlp.loss == "mse":  # ∂loss/∂A = 2(A - Y) / N
            dA = 2.0 * (A - Y) / N
            E_dA = 2.0 * (E_A + u * (np.abs(A) + np.abs(Y))) / N
        else:  # bce: ∂loss/∂A = (A - Y) / max(A(1 - A), 1e-12) / N (PyTorch's floor)
            with np.errstate(divide="ignore", invalid="ignore"):
                dA = (A - Y) / np.maximum(A * (1.0 - A), 1e-12) / N
                # where A(1 - A) is floored, A's own error moves 1 - A (or A) relatively
                floored = A * (1.0 - A) < 1e-12
                E_dA = np.where(
                    floored,
                    np.abs(dA) * (E_A + u) / np.maximum(np.minimum(A, 1.0 - A), u),
                    np.abs(dA) * lib,
                )
        E_loss = totals(np.abs(dA) * E_A) + own_loss
        E_dZ = (
            E_dA * slope
            + np.abs(dA) * _slope_error(act, Z, A, E_Z, E_A, u)
            + lib * np.abs(dZ)
            + (E_A / N if mlp.loss == "bce" else 0.0)
        )
    return E_loss, E_dZ
