"""The JAX reference behind the engine contract (``reference/__init__.py``): scratch's state in,
the trace out. The model and its step are in ``jax_mlp.py``; here is the plumbing around
them: one compiled call per configuration that takes scratch's optimizer state as it is,
builds optax's state from it, steps, and hands every float tensor of the trace back as one
vector (one transfer, one conversion).

JAX takes scratch's layout as it is (``Z = A @ W + b``), so nothing is transposed.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from reference.jax_mlp import (
    ACTIVATIONS,
    LOSSES,
    OPTIMIZERS,
    STATE_FIELDS,
    Params,
    evaluate,
    learning_rate,
    make_optimizer,
    make_train_step,
)
from scratch.config import MLP, Optimizer
from scratch.trace_schema import (
    COUNTED,
    OPTIMIZER_STATE,
    STATE,
    names_of,
    param_names,
    parameter_shapes,
    parse,
    running_names,
    shape_of,
    state_names,
)

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "gpu")


def write_state(opt: Optimizer, names: list[str], opt_state, state: dict, t):
    """scratch's optimizer state -> ``opt_state`` (a fresh ``tx.init``) with its leaves replaced:
    ``momentum_{p}`` is TraceState.trace[p], ``adam_m_{p}`` and ``adam_v_{p}`` are
    ScaleByAdamState.mu[p] and .nu[p], and t is ScaleByAdamState.count (optax counts finished
    steps as scratch does, and bias-corrects with count + 1) and ScaleByScheduleState.count
    (a learning-rate schedule's, evaluated at it). The fields are found by name
    wherever they sit in optax's chain, and a field that is not there fails loudly."""
    fields: dict = {}
    for p in names:
        for s in OPTIMIZER_STATE[opt.name]:
            fields.setdefault(STATE_FIELDS[s], {})[p] = state[STATE[s].prefix + p]
    if COUNTED[opt.name] or opt.lr_schedule != "constant":  # and a schedule's count
        fields["count"] = jnp.asarray(t, jnp.int32)
    return optax.tree.set(opt_state, **fields) if fields else opt_state


@functools.lru_cache(maxsize=16)  # each holds compiled code; a few cover a test's reuse
def compiled(mlp: MLP, optimizer: Optimizer):
    """(jitted engine step, jitted forward) for one network and optimizer.

    The step: (params, scratch's state {name: array}, t, X, Y) -> (new params, new state,
    new t, every float tensor of the trace as one vector, in the trace's order). Shared by
    every engine of the same configuration, so that a process compiles it once per
    configuration, dtype and batch shape (the last, partial batch of an epoch is a second
    shape), not once per engine: a test matrix makes hundreds of engines.
    """
    names = param_names(mlp.n_layers, mlp.batch_norm)
    weights_only = {p: parse(p).decays for p in names}  # decay never touches b, gamma, beta
    tx = make_optimizer(optimizer, weights_only)
    train_step = make_train_step(mlp, optimizer, tx)
    floats = [n for n in names_of(mlp, optimizer) if n != "t"]
    running = running_names(mlp.n_layers, mlp.batch_norm)
    kept = [n for p in names for n in state_names(optimizer.name, p)] + running
    schedule = learning_rate(optimizer)

    def engine_step(params: Params, state: dict, t, X, Y, masks: dict):
        opt_state = write_state(optimizer, names, tx.init(params), state, t)
        before = {n: state[n] for n in running}
        new_params, _, trace = train_step(params, opt_state, X, Y, masks, before)
        if callable(schedule):  # the lr optax took: its schedule at the count, t
            trace["lr"] = jnp.asarray(schedule(t), X.dtype)
        flat = jnp.concatenate([jnp.reshape(trace[n], -1) for n in floats])
        return new_params, {n: trace[n] for n in kept}, trace.get("t", t + 1), flat

    # evaluation: without dropout, batch normalization with the running statistics
    predict = jax.jit(lambda params, state, X: evaluate(mlp, params, X, state))
    return jax.jit(engine_step), predict


def default_device() -> jax.Device:
    """Where jit puts inputs that are not on a device yet: ``jax_default_device`` where the
    user set it (a device or a platform's name), else JAX's first device."""
    chosen = jax.config.jax_default_device
    if chosen is None:
        return jax.devices()[0]
    return jax.devices(chosen)[0] if isinstance(chosen, str) else chosen


class JaxEngine:
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
            ("optimizer", optimizer.name, OPTIMIZERS),
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
            self.device = jax.devices(device)[0]
        except RuntimeError as err:
            raise ValueError(f"device {device!r} is not available to JAX: {err}") from None
        self.mlp, self.optimizer = mlp, optimizer
        self.dtype = np.dtype(dtype)
        self._names = param_names(mlp.n_layers, mlp.batch_norm)
        self._trace_names = names_of(mlp, optimizer)
        self._floats = [n for n in self._trace_names if n != "t"]
        self._kept = [n for p in self._names for n in state_names(optimizer.name, p)]
        self._kept += running_names(mlp.n_layers, mlp.batch_norm)  # batch norm's statistics
        self._step, self._forward = compiled(mlp, optimizer)
        # Arrays from NumPy go straight into the jitted functions on the default device (jit
        # moves them in C++, for a tenth of device_put's cost); elsewhere through device_put.
        self._direct = self.device == default_device()
        self._shapes = parameter_shapes(mlp.sizes, mlp.batch_norm)
        self._layouts: dict[int, list] = {}  # the flat trace's layout per batch size
        self._params: Params | None = None
        self._state: dict = {}
        self._t = None

    def set_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None:
        """Load canonical parameters and scratch's optimizer state
        (``{"t": t, "momentum_W1": …}`` or ``{"t": t, "adam_m_W1": …, "adam_v_W1": …}``)."""
        self._check_state(params, opt_state)
        self._params = {p: self._put(params[p]) for p in self._names}
        self._state = {n: self._put(opt_state[n]) for n in self._kept}
        self._t = self._put(opt_state["t"], self._count_dtype)

    def _check_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None:
        if params.keys() != self._shapes.keys():
            raise ValueError(f"parameters must be {self._names}; got {sorted(params)}")
        for p, shape in self._shapes.items():
            if np.shape(params[p]) != shape:
                raise ValueError(f"{p} has shape {np.shape(params[p])}, expected {shape}")
        missing = [n for n in ["t", *self._kept] if n not in opt_state]
        if missing:
            raise ValueError(f"optimizer state lacks {missing}")

    def step(
        self, X: np.ndarray, Y: np.ndarray, masks: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """One training step on X (B, n_0), Y (B, n_L) (and, with dropout, the step's keep
        masks ``{"M1": (B, n_1), …}``): forward, autodiff, optax update.

        Returns scratch's trace (same keys, same order) as NumPy arrays in the engine's dtype
        (views of one array); the engine keeps the new parameters and optimizer state.
        """
        self._check_ready()
        if bool(masks) != bool(self.mlp.dropout):
            raise ValueError("dropout masks are given exactly when the network has dropout")
        X, Y = self._put(X), self._put(Y)
        given = {k: self._put(m) for k, m in masks.items()} if masks else {}
        args = (self._params, self._state, self._t, X, Y, given)
        self._params, self._state, self._t, flat = self._step(*args)
        flat = self._checked(np.asarray(flat))
        return self._unflatten(flat, X.shape[0], self._t)

    def _unflatten(self, flat: np.ndarray, batch: int, t) -> dict[str, np.ndarray]:
        """One step's flat float trace as scratch's trace: views of ``flat``, and t."""
        out = {
            name: flat[start:stop].reshape(shape)
            for name, start, stop, shape in self._layout(batch)
        }
        if "t" in self._trace_names:
            out["t"] = np.asarray(int(t), dtype=np.int64)
        return {name: out[name] for name in self._trace_names}

    def _layout(self, batch: int) -> list[tuple[str, int, int, tuple[int, ...]]]:
        """Where each float trace tensor sits in the flat trace of a batch of ``batch`` rows,
        and its shape, as the trace schema states it: (name, start, stop, shape)."""
        if batch not in self._layouts:
            layout, start = [], 0
            for name in self._floats:
                shape = shape_of(name, self.mlp.sizes, batch)
                layout.append((name, start, start + math.prod(shape), shape))
                start += math.prod(shape)
            self._layouts[batch] = layout
        return self._layouts[batch]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A_L (n, n_L): the network's output on X (n, n_0) with the current parameters."""
        self._check_ready()
        running = {n: self._state[n] for n in self._kept if n.startswith("running_")}
        return self._checked(np.asarray(self._forward(self._params, running, self._put(X))))

    def params(self) -> dict[str, np.ndarray]:
        """The current parameters W1, b1, …, WL, bL, canonical layout, engine dtype."""
        self._check_ready()
        return {p: self._checked(np.array(self._params[p])) for p in self._names}

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """What its next step starts from, as ``set_state`` takes it: the parameters and
        scratch's optimizer state (optax's buffers, the running statistics, ``t``)."""
        self._check_ready()
        kept = {n: self._checked(np.array(self._state[n])) for n in self._kept}
        return self.params(), {**kept, "t": int(self._t)}

    def _put(self, array: np.ndarray, dtype=None) -> jax.Array | np.ndarray:
        """NumPy -> an input of the jitted functions on the engine's device, in the engine's
        dtype unless told: a private, read-only NumPy copy, which jit moves to the default
        device itself, and device_put moves elsewhere. The copy is what keeps the caller's
        arrays out of the engine: device_put onto a CPU device may alias a 64-byte-aligned
        NumPy array (zero-copy), so that the caller writing it later would change the engine's
        state (seen where the default device is a GPU and the engine is on the CPU)."""
        copy = np.array(array, dtype=dtype or self.dtype)
        copy.flags.writeable = False
        return copy if self._direct else jax.device_put(copy, self.device)

    def _checked(self, out: np.ndarray) -> np.ndarray:
        """A float result in the engine's dtype; anything else is a bug, not a cast."""
        if out.dtype != self.dtype:
            raise RuntimeError(
                f"came back as {out.dtype}, not {self.dtype}"
                + (" (was jax_enable_x64 turned off?)" if self.dtype == np.float64 else "")
            )
        return out

    @property
    def _count_dtype(self):
        return np.int64 if self.dtype == np.float64 else np.int32

    def _check_ready(self) -> None:
        if self._params is None:
            raise RuntimeError("call set_state(params, opt_state) first")
