"""The MLP in JAX: pure functions over a dict of parameters, autodiff for every gradient,
optax for every update.

Shape letters (as in ``scratch/network.py``): B the batch size, L the number of layers with
weights, n_l the width of layer l (n_0 features, n_L outputs).

Parameters are the canonical dict ``W1, b1, …, WL, bL`` with ``Wl: (n_{l-1}, n_l)`` and
``bl: (n_l,)``, and the forward pass is ``Z = A_prev @ W + b``: JAX takes this layout as it
is, so — unlike ``torch_mlp`` — nothing is transposed on the way in or out.

Nothing here re-derives a gradient or re-writes an optimizer: the loss's gradient with
respect to the parameters and to each pre-activation (the error terms dZ_l) comes from one
``jax.value_and_grad``, and the update from ``optax``. The whole training step is one
``jax.jit``-compiled function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scratch.network import MLP
from scratch.optimizers import Optimizer

Params = dict[str, jax.Array]

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "gpu")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")

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


# jax.nn.relu's derivative at Z = 0 is 0, as in PyTorch and scratch.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": leaky_relu,
    "identity": identity,
}


def mse(A: jax.Array, Y: jax.Array) -> jax.Array:
    """(1 / (B·K)) Σ (A - Y)².  ``optax.squared_error``, not ``optax.l2_loss`` (which halves it)."""
    return jnp.mean(optax.squared_error(A, Y))


def _bce_clamped(A: jax.Array, Y: jax.Array) -> jax.Array:
    """-(1 / (B·K)) Σ [Y·max(log A, -100) + (1 - Y)·max(log(1 - A), -100)], A probabilities.

    optax has no cross-entropy on probabilities (only on logits), so it is written here; the
    clamp at -100 is PyTorch's BCELoss convention, which scratch follows. Where A is exactly
    0 or 1 the log is -inf and its derivative infinite: the inner ``where`` feeds the log a
    harmless value there, so the clamped branch's gradient is 0 instead of 0·∞ = NaN (the
    values are unchanged).
    """
    log_A = jnp.where(A > 0, jnp.log(jnp.where(A > 0, A, 1.0)), -jnp.inf)  # (B, K)
    log_1mA = jnp.where(A < 1, jnp.log1p(-jnp.where(A < 1, A, 0.0)), -jnp.inf)  # (B, K)
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
    mlp: MLP, params: Params, X: jax.Array, eps: list[jax.Array] | None = None
) -> tuple[list[jax.Array], list[jax.Array]]:
    """The forward pass: ([Z1, …, ZL], [A1, …, AL]).

    A_0 = X   (B, n_0);   for l = 1..L:  Z_l = A_{l-1} @ W_l + b_l (+ eps_l),  A_l = g_l(Z_l)
    (B, n_l). ``eps_l`` is a zero (B, n_l) added only so that autodiff can report ∂loss/∂Z_l.
    """
    Zs, As = [], []
    A = X  # (B, n_0)
    for l in range(1, mlp.n_layers + 1):
        Z = jnp.matmul(A, params[f"W{l}"], precision=PRECISION) + params[f"b{l}"]  # (B, n_l)
        if eps is not None:
            Z = Z + eps[l - 1]
        A = ACTIVATIONS[mlp.activation_of(l)](Z)  # (B, n_l)
        Zs.append(Z)
        As.append(A)
    return Zs, As


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
      l2        g ← g + λ·W ahead of the optimizer (optax.add_decayed_weights), as scratch.
    """
    if opt.name == "sgd":
        base = optax.sgd(opt.lr)
    elif opt.name == "momentum":
        base = optax.sgd(opt.lr, momentum=opt.momentum)
    elif opt.name == "nesterov":
        base = optax.sgd(opt.lr, momentum=opt.momentum, nesterov=True)
    elif opt.name == "adam":
        base = optax.adam(opt.lr, b1=opt.beta1, b2=opt.beta2, eps=opt.eps, eps_root=0.0)
    elif opt.name == "adamw":
        base = optax.adamw(
            opt.lr,
            b1=opt.beta1,
            b2=opt.beta2,
            eps=opt.eps,
            eps_root=0.0,
            weight_decay=opt.weight_decay,
            mask=weights_only,
        )
    else:
        raise ValueError(f"unknown optimizer {opt.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if opt.l2:
        l2 = optax.masked(optax.add_decayed_weights(opt.l2), weights_only)
        return optax.chain(l2, base)
    return base


def make_train_step(mlp: MLP, opt: Optimizer, tx: optax.GradientTransformation) -> Callable:
    """The training step as one pure function (to be jitted):

    (params, opt_state, X (B, n_0), Y (B, n_L)) -> (new params, new opt_state, trace tensors).
    """
    loss_of = LOSSES[mlp.loss]
    L = mlp.n_layers
    names = param_names(mlp)

    def loss_and_forward(params: Params, eps: list[jax.Array], X: jax.Array, Y: jax.Array):
        Zs, As = forward(mlp, params, X, eps)
        return loss_of(As[-1], Y), (Zs, As)

    def train_step(params: Params, opt_state, X: jax.Array, Y: jax.Array):
        B = X.shape[0]
        eps = [jnp.zeros((B, n), X.dtype) for n in mlp.sizes[1:]]  # (B, n_l), l = 1..L
        # ∂loss/∂eps_l at eps_l = 0 is ∂loss/∂Z_l: the error term dZ_l, from autodiff.
        (loss, (Zs, As)), (grads, dZs) = jax.value_and_grad(
            loss_and_forward, argnums=(0, 1), has_aux=True
        )(params, eps, X, Y)
        updates, new_state = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)

        trace: dict[str, jax.Array] = {}
        for l in range(1, L + 1):
            trace[f"Z{l}"], trace[f"A{l}"] = Zs[l - 1], As[l - 1]
        trace["loss"] = loss
        for l in range(L, 0, -1):
            trace[f"dZ{l}"], trace[f"dW{l}"], trace[f"db{l}"] = (
                dZs[l - 1],
                grads[f"W{l}"],
                grads[f"b{l}"],
            )
        for p in names:
            trace[f"Δ{p}"] = new_params[p] - params[p]
        trace.update(read_state(opt, names, new_state))
        trace.update(new_params)
        return new_params, new_state, trace

    return train_step


def param_names(mlp: MLP) -> list[str]:
    """W1, b1, …, WL, bL."""
    return [f"{p}{l}" for l in range(1, mlp.n_layers + 1) for p in "Wb"]


def trace_names(mlp: MLP, opt: Optimizer) -> list[str]:
    """The trace's keys in scratch's order (``scratch.training.train_step``)."""
    L = mlp.n_layers
    names = param_names(mlp)
    return (
        [f"{x}{l}" for l in range(1, L + 1) for x in "ZA"]
        + ["loss"]
        + [f"d{x}{l}" for l in range(L, 0, -1) for x in "ZWb"]
        + [f"Δ{p}" for p in names]
        + [s for p in names for s in opt.state_names(p)]
        + names
    )


# scratch's optimizer-state names (prefix of ``momentum_W1``, …) and the optax state fields that
# hold them. The fields are found by name (optax.tree.get / optax.tree.set) wherever they sit in
# the chain — inside a tuple, next to a MaskedState — so no positional index into optax's state
# is needed, and a field that is not there fails loudly with a KeyError.
STATE_FIELDS = {"momentum": "trace", "adam_m": "mu", "adam_v": "nu"}


def read_state(opt: Optimizer, names: list[str], opt_state) -> dict[str, jax.Array]:
    """optax's state -> scratch's names, in the order of ``Optimizer.state_names``:
    TraceState.trace[p] -> momentum_{p};  ScaleByAdamState.mu[p], .nu[p] -> adam_m_{p}, adam_v_{p}.
    """
    return {
        name: optax.tree.get(opt_state, STATE_FIELDS[name.removesuffix(f"_{p}")])[p]
        for p in names
        for name in opt.state_names(p)
    }


def write_state(opt: Optimizer, names: list[str], opt_state, state: dict, put: Callable):
    """scratch's optimizer state -> ``opt_state`` (a fresh ``tx.init``) with its leaves replaced.

    ``state["step"]`` = t is ScaleByAdamState.count (optax counts finished steps as scratch
    does, and bias-corrects with count + 1); sgd and momentum keep no step counter.
    """
    fields: dict = {}
    for p in names:
        for name in opt.state_names(p):
            field = STATE_FIELDS[name.removesuffix(f"_{p}")]
            fields.setdefault(field, {})[p] = put(state[name])
    if opt.name in ("adam", "adamw"):
        fields["count"] = put(state["step"], np.int32)
    return optax.tree.set(opt_state, **fields) if fields else opt_state


@functools.lru_cache(maxsize=16)  # each holds compiled code; a few cover a test's reuse
def compiled(mlp: MLP, optimizer: Optimizer):
    """(optax transform, jitted step, jitted forward) for one network and optimizer.

    Shared by every engine of the same configuration, so that a process compiles each step
    once per configuration, dtype and batch shape (the last, partial batch of an epoch is a
    second shape), not once per engine: a test matrix makes hundreds of engines.
    """
    weights_only = {p: p.startswith("W") for p in param_names(mlp)}  # decay never touches b_l
    tx = make_optimizer(optimizer, weights_only)
    train_step = jax.jit(make_train_step(mlp, optimizer, tx))
    predict = jax.jit(lambda params, X: forward(mlp, params, X)[1][-1])
    return tx, train_step, predict


class JaxMLP:
    """scratch's MLP and optimizer in JAX and optax; the engine contract of ``reference``.

    ``mlp`` and ``optimizer`` are scratch's configuration dataclasses; ``dtype`` is "float64"
    (turns on JAX's 64-bit mode) or "float32"; ``device`` is "cpu" or "gpu".
    """

    name = "jax"

    def __init__(
        self, mlp: MLP, optimizer: Optimizer, dtype: str = "float64", device: str = "cpu"
    ) -> None:
        for kind, name, valid in (
            ("hidden activation", mlp.hidden, ACTIVATIONS),
            ("output activation", mlp.output, ACTIVATIONS),
            ("loss", mlp.loss, LOSSES),
            ("dtype", dtype, DTYPES),
            ("device", device, DEVICES),
        ):
            if name not in valid:
                raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(valid)}")
        if dtype == "float64":
            # JAX silently computes in float32 unless 64-bit types are on, and the switch is
            # process-wide: it is flipped here, where a float64 engine is made, not when this
            # module is imported, so that importing it changes nothing for a float32 run or
            # for other JAX code in the process.
            jax.config.update("jax_enable_x64", True)
        try:
            self._device = jax.devices(device)[0]
        except RuntimeError as err:
            raise ValueError(f"device {device!r} is not available to JAX: {err}") from None
        self.mlp, self.optimizer = mlp, optimizer
        self.dtype = np.dtype(dtype)
        self._names = param_names(mlp)
        self._trace_names = trace_names(mlp, optimizer)
        self._tx, self._train_step, self._forward = compiled(mlp, optimizer)
        # Arrays from NumPy go straight into the jitted functions on the default device (jit
        # moves them in C++, for a tenth of device_put's cost); elsewhere through device_put.
        self._direct = self._device == jax.devices()[0]
        self._fresh_state: tuple = ((), None)  # (parameter shapes, tx.init of such parameters)
        self._params: Params | None = None
        self._opt_state = None

    def set_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None:
        """Load canonical parameters and scratch's optimizer state
        (``{"step": t, "momentum_W1": …}`` or ``{"step": t, "adam_m_W1": …, "adam_v_W1": …}``)."""
        if sorted(params) != sorted(self._names):
            raise ValueError(f"parameters must be {self._names}; got {sorted(params)}")
        needed = [n for p in self._names for n in self.optimizer.state_names(p)]
        missing = [n for n in ["step", *needed] if n not in opt_state]
        if missing:
            raise ValueError(f"optimizer state lacks {missing}")
        self._params = {p: self._put(params[p]) for p in self._names}
        self._opt_state = write_state(
            self.optimizer, self._names, self._initial_state(), opt_state, self._put
        )

    def _initial_state(self):
        """``tx.init(params)``, made once per parameter shapes: it depends on nothing else
        (zeros and a zero count), and every leaf scratch keeps is replaced by ``write_state``;
        JAX arrays are immutable, so the one fresh state can be shared by every load."""
        shapes = tuple(self._params[p].shape for p in self._names)
        if self._fresh_state[0] != shapes:
            self._fresh_state = (shapes, self._tx.init(self._params))
        return self._fresh_state[1]

    def step(self, X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
        """One training step on X (B, n_0), Y (B, n_L): forward, autodiff, optax update.

        Returns scratch's trace (same keys, same order) as NumPy arrays in the engine's dtype;
        the engine keeps the new parameters and optimizer state.
        """
        self._check_ready()
        self._params, self._opt_state, trace = self._train_step(
            self._params, self._opt_state, self._put(X), self._put(Y)
        )
        return {name: self._to_numpy(name, trace[name]) for name in self._trace_names}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A_L (n, n_L): the network's output on X (n, n_0) with the current parameters."""
        self._check_ready()
        return self._to_numpy("A_L", self._forward(self._params, self._put(X)))

    def params(self) -> dict[str, np.ndarray]:
        """The current parameters W1, b1, …, WL, bL, canonical layout, engine dtype."""
        self._check_ready()
        return {p: self._to_numpy(p, self._params[p]) for p in self._names}

    def _put(self, array: np.ndarray, dtype: np.dtype | None = None) -> jax.Array | np.ndarray:
        """NumPy -> an input of the jitted functions on the engine's device, in the engine's
        dtype unless told: on the default device a private, read-only NumPy copy (jit moves
        it to the device; no one can change it in place meanwhile), elsewhere a device_put."""
        if not self._direct:
            return jax.device_put(np.asarray(array, dtype=dtype or self.dtype), self._device)
        copy = np.array(array, dtype=dtype or self.dtype)
        copy.flags.writeable = False
        return copy

    def _to_numpy(self, name: str, array: jax.Array) -> np.ndarray:
        """A JAX result -> NumPy; a dtype other than the engine's is a bug, not a cast."""
        out = np.asarray(array)
        if out.dtype != self.dtype:
            raise RuntimeError(
                f"{name} came back as {out.dtype}, not {self.dtype}"
                + (" (was jax_enable_x64 turned off?)" if self.dtype == np.float64 else "")
            )
        return out

    def _check_ready(self) -> None:
        if self._params is None:
            raise RuntimeError("call set_state(params, opt_state) first")
