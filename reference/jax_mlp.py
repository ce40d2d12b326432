"""The MLP in JAX: pure functions over a dict of parameters, autodiff for every gradient,
optax for every update.

Shape letters (as in ``scratch/network.py``): B the batch size, L the number of layers with
weights, n_l the width of layer l (n_0 features, n_L outputs).

Parameters are the canonical dict ``W1, b1, …, WL, bL`` with ``Wl: (n_{l-1}, n_l)`` and
``bl: (n_l,)``, and the forward pass is ``Z = A_prev @ W + b``: JAX takes this layout as it
is, so — unlike ``torch_mlp`` — nothing is transposed on the way in or out.

Nothing here re-derives a gradient or re-writes an optimizer: the loss's gradient with
respect to the parameters and to each pre-activation (the error terms dZ_l) comes from one
``jax.value_and_grad``, and the update from ``optax``. The whole training step is one pure
function, jitted by ``jax_engine.py`` (which also translates the optimizer state).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from scratch.config import MLP, Optimizer
from scratch.trace_schema import COUNTED, OPTIMIZER_STATE, STATE, param_names, parse, shape_of

Params = dict[str, jax.Array]

# The negative-side slope of leaky_relu: PyTorch's nn.LeakyReLU default, and scratch's.
LEAKY_RELU_SLOPE = 0.01
# PyTorch's BCELoss clamps each log term below at -100; scratch follows it, so do we.
BCE_LOG_FLOOR = -100.0

# Matmuls at full precision for the dtype. On CPU this is what JAX does anyway; on GPUs its
# default precision for float32 matmuls behaves like TF32 (10-bit mantissa, about 1000× the
# error of float32), which would swamp any comparison with scratch.
PRECISION = jax.lax.Precision.HIGHEST


def leaky_relu(Z: jax.Array) -> jax.Array:
    """A = Z where Z > 0, else 0.01·Z.

    Written out, not ``jax.nn.leaky_relu``: that one tests ``Z >= 0``, so its autodiff
    derivative at Z = 0 is 1, where PyTorch and scratch take the negative side's 0.01. With
    ``Z > 0`` the derivative at 0 is 0.01 (the same value, A = 0, either way).
    """
    return jnp.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)


def identity(Z: jax.Array) -> jax.Array:
    """A = Z."""
    return Z


# jax.nn.relu's derivative at Z = 0 is 0, as in PyTorch and scratch. jax.nn.elu (α = 1, scratch's
# ELU_ALPHA) is where(Z > 0, Z, expm1(Z)): its derivative at 0 is the negative side's e^0 = 1,
# the positive side's too; autodiff takes expm1's derivative as A + 1 (PyTorch and scratch:
# e^Z), equal but for the rounding of A + 1 where A is near -1 (the allowance's).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": leaky_relu,
    "elu": lambda Z: jax.nn.elu(Z, alpha=1.0),
    "identity": identity,
}


def mse(A: jax.Array, Y: jax.Array) -> jax.Array:
    """(1 / (B·K)) Σ (A - Y)².  ``optax.squared_error``, not ``optax.l2_loss`` (which halves it)."""
    return jnp.mean(optax.squared_error(A, Y))


@jax.custom_jvp
def log1p(x: jax.Array) -> jax.Array:
    """log(1 + x) to a couple of ulps: ``jnp.log1p``, except on [-0.45, -0.3], where it is
    log(fl(1 + x)) (1 + x is in [0.55, 0.7] there, so its rounding moves the log by under an
    ulp).

    XLA's float64 log1p on the CPU is off by up to 128 ulps for x in [-0.4143, -0.358] (seen
    with jax 0.10.2; tests/reference/test_jax_engine.py measures it): BCE's log(1 - A) for
    0.358 < A < 0.4143 came out 127 ulps from scratch's and PyTorch's. Its derivative is
    1 / (1 + x), as log1p's."""
    return jnp.where((x > -0.45) & (x < -0.3), jnp.log(1.0 + x), jnp.log1p(x))


@log1p.defjvp
def _log1p_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return log1p(x), dx / (1.0 + x)


def _bce_clamped(A: jax.Array, Y: jax.Array) -> jax.Array:
    """-(1 / (B·K)) Σ [Y·max(log A, -100) + (1 - Y)·max(log(1 - A), -100)], A probabilities.

    optax has no cross-entropy on probabilities (only on logits), so it is written here; the
    clamp at -100 is PyTorch's BCELoss convention, which scratch follows. Where A is exactly
    0 or 1 the log is -inf and its derivative infinite: the inner ``where`` feeds the log a
    harmless value there, so the clamped branch's gradient is 0 instead of 0·∞ = NaN (the
    values are unchanged).
    """
    log_A = jnp.where(A > 0, jnp.log(jnp.where(A > 0, A, 1.0)), -jnp.inf)  # (B, K)
    log_1mA = jnp.where(A < 1, log1p(-jnp.where(A < 1, A, 0.0)), -jnp.inf)  # (B, K)
    log_A, log_1mA = jnp.maximum(log_A, BCE_LOG_FLOOR), jnp.maximum(log_1mA, BCE_LOG_FLOOR)
    return -jnp.mean(Y * log_A + (1.0 - Y) * log_1mA)


# PyTorch's BCELoss backward is (A - Y) / max(A(1 - A), 1e-12) / (B·K): not the derivative of
# its own clamped forward where A(1 - A) < 1e-12 (|Z_L| ≳ 27.6 behind a sigmoid). Scratch
# follows PyTorch; so that all three compute the same thing, this loss keeps autodiff's
# derivative everywhere else and takes PyTorch's floored form only in that saturated region.
BCE_GRAD_FLOOR = 1e-12


@jax.custom_jvp
def bce(A: jax.Array, Y: jax.Array) -> jax.Array:
    """Binary cross-entropy on probabilities, with PyTorch's BCELoss conventions."""
    return _bce_clamped(A, Y)


@bce.defjvp
def _bce_jvp(primals, tangents):
    A, Y = primals
    dA, _ = tangents  # Y is data: nothing is differentiated with respect to it
    value, autodiff = jax.value_and_grad(_bce_clamped)(A, Y)  # (), (B, K)
    saturated = A * (1.0 - A) < BCE_GRAD_FLOOR
    torch_form = (A - Y) / BCE_GRAD_FLOOR / A.size  # PyTorch's backward where it floors
    grad = jnp.where(saturated, torch_form, autodiff)  # (B, K)
    return value, jnp.sum(grad * dA)


def bce_logits(A: jax.Array, Y: jax.Array) -> jax.Array:
    """(1 / (B·K)) Σ -[Y log σ(A) + (1 - Y) log(1 - σ(A))], A logits."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(A, Y))


def softmax_cross_entropy(A: jax.Array, Y: jax.Array) -> jax.Array:
    """(1 / B) Σ_i -Σ_k Y_ik log softmax(A)_ik, A logits (B, K), Y one-hot (B, K)."""
    return jnp.mean(optax.softmax_cross_entropy(A, Y))


# Every loss is the mean over the batch (reduction="mean"), as in scratch and PyTorch.
LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "mse": mse,
    "bce": bce,
    "bce_logits": bce_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def forward(
    mlp: MLP,
    params: Params,
    X: jax.Array,
    taps: dict[str, jax.Array] | None = None,
    masks: dict[str, jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """The forward pass in training, under the trace's names: Z_l and A_l, and with batch
    normalization mu_l, var_l, xhat_l, N_l; with dropout D_l.

    A_0 = X   (B, n_0);   for l = 1..L:  Z_l = A_{l-1} @ W_l + b_l,  A_l = g_l(Z_l)   (B, n_l).
    Batch normalization, written out as a pure function (flax's ``BatchNorm`` keeps its
    statistics in a module's mutable state; the same arithmetic, here in plain jnp):
    mu_l = mean(Z_l), var_l = mean((Z_l - mu_l)²), xhat_l = (Z_l - mu_l)/√(var_l + ε),
    N_l = gamma_l·xhat_l + beta_l, A_l = g_l(N_l). With ``masks`` (the step's keep masks,
    given: never drawn here), D_l = where(M_l, A_l/(1 - p), 0), as flax's Dropout writes it,
    and layer l + 1 reads D_l. ``taps``: zeros added to a tensor of the same name, only so
    that autodiff can report the loss's gradient with respect to it (dZ_l, dN_l, …).
    """
    taps = taps or {}
    out: dict[str, jax.Array] = {}

    def tapped(name: str, value: jax.Array) -> jax.Array:
        out[name] = value = value + taps[name] if name in taps else value
        return value

    A = X  # (B, n_0)
    for l in range(1, mlp.n_layers + 1):
        Z = jnp.matmul(A, params[f"W{l}"], precision=PRECISION)  # (B, n_l)
        Z = tapped(f"Z{l}", Z + params[f"b{l}"] if f"b{l}" in params else Z)  # no b before BN
        hidden = l < mlp.n_layers
        if mlp.batch_norm and hidden:
            mu = tapped(f"mu{l}", jnp.mean(Z, axis=0))  # (n_l,)
            var = tapped(f"var{l}", jnp.mean((Z - mu) ** 2, axis=0))  # (n_l,)
            xhat = tapped(f"xhat{l}", (Z - mu) / jnp.sqrt(var + mlp.bn_eps))  # (B, n_l)
            Z = tapped(f"N{l}", params[f"gamma{l}"] * xhat + params[f"beta{l}"])  # (B, n_l)
        A = out[f"A{l}"] = ACTIVATIONS[mlp.activation_of(l)](Z)  # (B, n_l)
        if masks and hidden:
            A = out[f"D{l}"] = jnp.where(masks[f"M{l}"] != 0, A / (1.0 - mlp.dropout), 0.0)
    return out


def evaluate(mlp: MLP, params: Params, X: jax.Array, running: dict | None = None) -> jax.Array:
    """A_L (n, n_L) in evaluation: no dropout; batch normalization with the running
    statistics, N_l = gamma_l·(Z_l - running_mean_l)/√(running_var_l + ε) + beta_l."""
    A = X
    for l in range(1, mlp.n_layers + 1):
        Z = jnp.matmul(A, params[f"W{l}"], precision=PRECISION)
        Z = Z + params[f"b{l}"] if f"b{l}" in params else Z
        if mlp.batch_norm and l < mlp.n_layers:
            mean, var = running[f"running_mean{l}"], running[f"running_var{l}"]
            xhat = (Z - mean) / jnp.sqrt(var + mlp.bn_eps)
            Z = params[f"gamma{l}"] * xhat + params[f"beta{l}"]
        A = ACTIVATIONS[mlp.activation_of(l)](Z)
    return A


def running_stats(mlp: MLP, running: dict, values: dict, B: int) -> dict[str, jax.Array]:
    """The running statistics after the step, PyTorch's convention (which scratch follows):
    mean ← (1 - m)·mean + m·mu, var ← (1 - m)·var + m·var_B·B/(B - 1). flax's BatchNorm
    weighs them the other way (its momentum 0.99 is 1 - m) and keeps the biased variance."""
    m, out = mlp.bn_momentum, {}
    for l in range(1, mlp.n_layers):
        out[f"running_mean{l}"] = (1 - m) * running[f"running_mean{l}"] + m * values[f"mu{l}"]
        unbiased = values[f"var{l}"] * (B / (B - 1))
        out[f"running_var{l}"] = (1 - m) * running[f"running_var{l}"] + m * unbiased
    return out


# Each optimizer from scratch's settings, its learning rate (a number or an optax schedule,
# ``learning_rate`` below) and the mask of the parameters that decay.
OPTIMIZERS: dict[str, Callable[[Optimizer, object, dict], optax.GradientTransformation]] = {
    "sgd": lambda o, lr, _: optax.sgd(lr),
    "momentum": lambda o, lr, _: optax.sgd(lr, momentum=o.momentum),
    "nesterov": lambda o, lr, _: optax.sgd(lr, momentum=o.momentum, nesterov=True),
    "adam": lambda o, lr, _: optax.adam(lr, b1=o.beta1, b2=o.beta2, eps=o.eps, eps_root=0.0),
    "adamw": lambda o, lr, mask: optax.adamw(
        lr, b1=o.beta1, b2=o.beta2, eps=o.eps, eps_root=0.0, weight_decay=o.weight_decay,
        mask=mask,
    ),
    # optax's defaults are ε inside the root and decay 0.9: set to PyTorch's form (scratch's)
    "rmsprop": lambda o, lr, _: optax.rmsprop(
        lr, decay=o.alpha, eps=o.eps, initial_scale=0.0, eps_in_sqrt=False, centered=False,
        momentum=None,
    ),
}  # fmt: skip


def learning_rate(opt: Optimizer):
    """optax's learning rate for ``opt.lr_schedule``: ``opt.lr``, or a schedule of the count
    of updates done (0 at the first update, as scratch's t - 1):

      step   optax.exponential_decay(lr, lr_step_size, lr_gamma, staircase=True):
             lr·γ^⌊count / s⌋, scratch's lr·γ^⌊(t - 1) / s⌋ and PyTorch's StepLR stepped
             after every update.
      cosine optax.linear_schedule(lr/(w + 1), lr, w) for the warm-up, joined at count w
             (join_schedules hands the next schedule count - w) to
             optax.cosine_decay_schedule(lr, D - w, alpha = lr_min/lr):
             lr·((1 - α)·½(1 + cos(π·(count - w)/(D - w))) + α).
    """
    if opt.lr_schedule == "step":
        schedule = optax.exponential_decay(opt.lr, opt.lr_step_size, opt.lr_gamma, staircase=True)
    elif opt.lr_schedule == "cosine":
        w, D = opt.lr_warmup, opt.lr_decay_steps
        schedule = optax.cosine_decay_schedule(opt.lr, D - w, alpha=opt.lr_min / opt.lr)
        if w:
            warmup = optax.linear_schedule(opt.lr / (w + 1), opt.lr, w)
            schedule = optax.join_schedules([warmup, schedule], [w])
    else:
        return opt.lr
    # optax's count is an int32, and count / s is then a float32 in JAX: a float64 run's lr
    # came out 1.5e-8 from lr·γ^n. Given the count as JAX's default float (float64 in 64-bit
    # mode), the schedule is computed in that precision.
    return lambda count: schedule(jnp.asarray(count, jax.dtypes.canonicalize_dtype(float)))


# PyTorch's clip_grad_norm_ scales by c / (‖g‖ + 1e-6); optax's clip_by_global_norm by c / ‖g‖.
CLIP_EPS = 1e-6


def clip_by_global_norm(clip_norm: float) -> optax.GradientTransformation:
    """g ← g · min(1, c / (‖g‖ + 1e-6)), ‖g‖ = ``optax.tree.norm`` of every gradient together:
    optax's ``clip_by_global_norm`` with PyTorch's ``clip_grad_norm_`` scale, the convention
    scratch follows (optax's own leaves out the 1e-6, which is a relative difference of
    1e-6/‖g‖: far beyond roundoff)."""

    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(1.0, clip_norm / (optax.tree.norm(updates) + CLIP_EPS))
        return jax.tree.map(lambda g: (g * scale).astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(opt: Optimizer, weights_only: dict[str, bool]) -> optax.GradientTransformation:
    """scratch's optimizer as an optax transformation; ``weights_only`` masks out the biases.

    Each matches ``scratch/optimizers.py`` formula for formula (checked against optax's source):
      sgd       optax.sgd: u = -lr·g.
      momentum  optax.trace: v ← g + μ·v (no dampening, lr not folded into v), u = -lr·v.
      nesterov  optax.trace(nesterov=True): v ← g + μ·v, u = -lr·(g + μ·v).
      adam      optax.scale_by_adam: m ← β1·m + (1-β1)·g, v ← β2·v + (1-β2)·g², t = count+1,
                u = -lr·m̂ / (√v̂ + ε) with ε outside the root (eps_root = 0), as PyTorch.
      adamw     optax.adamw: u = -lr·(m̂ / (√v̂ + ε) + λ·θ), the decay on the old θ and scaled
                by lr; scratch (and PyTorch) first shrink θ by lr·λ·θ, then take the adam
                step: the same value, rounded in a different order.
      rmsprop   optax.rmsprop with eps_in_sqrt=False (its default adds ε under the root),
                decay = α, initial_scale = 0, not centered, no momentum: v ← α·v + (1-α)·g²,
                u = -lr·g·(1/(√v + ε)) (a reciprocal and a product where PyTorch divides).
      l2        g ← g + λ·W ahead of the optimizer (optax.add_decayed_weights), as scratch.
      clipping  first of all (``clip_by_global_norm`` above), so that L2 and decay are added
                to the clipped gradient, as PyTorch's clip_grad_norm_ before step() does.
      schedule  the learning rate of every rule, and of adamw's decay, is ``learning_rate``:
                optax evaluates it at the count of updates done, kept in the optimizer
                state (``ScaleByScheduleState.count``).
    """
    if opt.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    chain = [OPTIMIZERS[opt.name](opt, learning_rate(opt), weights_only)]
    if opt.l2:
        chain.insert(0, optax.masked(optax.add_decayed_weights(opt.l2), weights_only))
    if opt.clip_norm:
        chain.insert(0, clip_by_global_norm(opt.clip_norm))
    return chain[0] if len(chain) == 1 else optax.chain(*chain)


def _in_adams_state(path, value) -> bool:
    """optax.tree.get's filter: a field of ScaleByAdamState."""
    return getattr(path[-1], "tuple_name", None) == "ScaleByAdamState"


def make_train_step(mlp: MLP, opt: Optimizer, tx: optax.GradientTransformation) -> Callable:
    """The training step as one pure function (to be jitted):

    (params, opt_state, X (B, n_0), Y (B, n_L), masks, running) -> (new params, new
    opt_state, trace tensors); ``masks``: the step's dropout masks ``{"M1": (B, n_1), …}``,
    or {} without; ``running``: the running statistics before the step (batch norm), or {}.
    """
    loss_of = LOSSES[mlp.loss]
    L = mlp.n_layers
    names = param_names(L, mlp.batch_norm)
    kept = OPTIMIZER_STATE[opt.name]
    tapped = {"Z": range(1, L + 1)}  # the tensors whose gradient the trace reports
    if mlp.batch_norm:
        tapped.update(dict.fromkeys(("mu", "var", "xhat", "N"), range(1, L)))

    def loss_and_forward(params: Params, taps: dict, X, Y, masks):
        values = forward(mlp, params, X, taps, masks)
        return loss_of(values[f"A{L}"], Y), values

    def train_step(params: Params, opt_state, X: jax.Array, Y: jax.Array, masks=None, running=None):
        B = X.shape[0]
        taps = {  # a zero of each tapped tensor's shape
            f"{name}{l}": jnp.zeros(shape_of(f"{name}{l}", mlp.sizes, B), X.dtype)
            for name, layers in tapped.items()
            for l in layers
        }
        # ∂loss/∂tap at tap = 0 is ∂loss/∂(the tensor): dZ_l, dN_l, …, from autodiff.
        (loss, values), (grads, dtaps) = jax.value_and_grad(
            loss_and_forward, argnums=(0, 1), has_aux=True
        )(params, taps, X, Y, masks or {})
        updates, new_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)

        trace: dict[str, jax.Array] = {**values, **(masks or {})}  # the masks it applied
        if mlp.batch_norm:
            trace.update(running_stats(mlp, running, values, B))
        trace["loss"] = loss
        for l in range(L, 0, -1):
            for name in ("N", "xhat", "var", "mu") if mlp.batch_norm and l < L else ():
                trace[f"d{name}{l}"] = dtaps[f"{name}{l}"]
            trace[f"dZ{l}"] = dtaps[f"Z{l}"]
            trace.update({f"d{p}": grads[p] for p in names if parse(p).layer == l})
        if opt.clip_norm:
            trace["grad_norm"] = optax.tree.norm(grads)  # the norm before clipping
        for p in names:
            trace[f"Δ{p}"] = new_params[p] - params[p]
        if COUNTED[opt.name]:
            # ScaleByAdamState.count (a schedule keeps a count of its own, equal to it)
            trace["t"] = optax.tree.get(new_state, "count", filtering=_in_adams_state)
        trace.update(read_state(kept, names, new_state))
        trace.update(new_params)
        return new_params, new_state, trace

    return train_step


# scratch's optimizer-state names (prefix of ``momentum_W1``, …) and the optax state fields that
# hold them. The fields are found by name (optax.tree.get / optax.tree.set) wherever they sit in
# the chain — inside a tuple, next to a MaskedState — so no positional index into optax's state
# is needed, and a field that is not there fails loudly with a KeyError.
STATE_FIELDS = {"momentum": "trace", "adam_m": "mu", "adam_v": "nu", "rmsprop_v": "nu"}


def read_state(kept: tuple[str, ...], names: list[str], opt_state) -> dict[str, jax.Array]:
    """optax's state -> the trace's names, per parameter in the trace's order:
    TraceState.trace[p] -> momentum_{p};  ScaleByAdamState.mu[p], .nu[p] -> adam_m_{p}, adam_v_{p};
    ScaleByRmsState.nu[p] -> rmsprop_v_{p}.
    """
    return {
        STATE[s].prefix + p: optax.tree.get(opt_state, STATE_FIELDS[s])[p]
        for p in names
        for s in kept
    }
