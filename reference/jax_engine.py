"""The JAX reference behind the engine contract (``reference/__init__.py``): scratch's state in,
the trace out. The model and its step are in ``jax_mlp.py``; here are the plumbing around
them: one compiled step per configuration, and the optimizer state translated to optax's.

JAX takes scratch's layout as it is (``Z = A @ W + b``), so nothing is transposed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np
import optax

from reference.jax_mlp import (
    ACTIVATIONS,
    LOSSES,
    OPTIMIZERS,
    STATE_FIELDS,
    Params,
    forward,
    make_optimizer,
    make_train_step,
)
from scratch.config import MLP, Optimizer
from scratch.trace_schema import (
    OPTIMIZER_STATE,
    STATE,
    dtype_of,
    param_names,
    parameter_shapes,
    parse,
    state_names,
    trace_names,
)

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "gpu")


def write_state(opt: Optimizer, names: list[str], opt_state, state: dict, put: Callable):
    """scratch's optimizer state -> ``opt_state`` (a fresh ``tx.init``) with its leaves replaced.

    ``state["t"]`` = t is ScaleByAdamState.count (optax counts finished steps as scratch
    does, and bias-corrects with count + 1); sgd and momentum keep no step counter.
    """
    fields: dict = {}
    for p in names:
        for s in OPTIMIZER_STATE[opt.name]:
            fields.setdefault(STATE_FIELDS[s], {})[p] = put(state[STATE[s].prefix + p])
    if opt.name in ("adam", "adamw"):
        fields["count"] = put(state["t"], np.int32)
    return optax.tree.set(opt_state, **fields) if fields else opt_state


@functools.lru_cache(maxsize=16)  # each holds compiled code; a few cover a test's reuse
def compiled(mlp: MLP, optimizer: Optimizer):
    """(optax transform, jitted step, jitted forward) for one network and optimizer.

    Shared by every engine of the same configuration, so that a process compiles each step
    once per configuration, dtype and batch shape (the last, partial batch of an epoch is a
    second shape), not once per engine: a test matrix makes hundreds of engines.
    """
    weights_only = {p: parse(p).decays for p in param_names(mlp.n_layers)}  # never b_l
    tx = make_optimizer(optimizer, weights_only)
    train_step = jax.jit(make_train_step(mlp, optimizer, tx))
    predict = jax.jit(lambda params, X: forward(mlp, params, X)[1][-1])
    return tx, train_step, predict


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
            self._device = jax.devices(device)[0]
        except RuntimeError as err:
            raise ValueError(f"device {device!r} is not available to JAX: {err}") from None
        self.mlp, self.optimizer = mlp, optimizer
        self.dtype = np.dtype(dtype)
        self._names = param_names(mlp.n_layers)
        self._trace_names = trace_names(mlp.n_layers, optimizer.name)
        self._tx, self._train_step, self._forward = compiled(mlp, optimizer)
        # Arrays from NumPy go straight into the jitted functions on the default device (jit
        # moves them in C++, for a tenth of device_put's cost); elsewhere through device_put.
        self._direct = self._device == jax.devices()[0]
        self._fresh_state: tuple = ((), None)  # (parameter shapes, tx.init of such parameters)
        self._params: Params | None = None
        self._opt_state = None

    def set_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None:
        """Load canonical parameters and scratch's optimizer state
        (``{"t": t, "momentum_W1": …}`` or ``{"t": t, "adam_m_W1": …, "adam_v_W1": …}``)."""
        if sorted(params) != sorted(self._names):
            raise ValueError(f"parameters must be {self._names}; got {sorted(params)}")
        for p, shape in parameter_shapes(self.mlp.sizes).items():
            if np.shape(params[p]) != shape:
                raise ValueError(f"{p} has shape {np.shape(params[p])}, expected {shape}")
        needed = [n for p in self._names for n in state_names(self.optimizer.name, p)]
        missing = [n for n in ["t", *needed] if n not in opt_state]
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
        return self._to_numpy(f"A{self.mlp.n_layers}", self._forward(self._params, self._put(X)))

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
        """A JAX result -> NumPy in the dtype the schema gives ``name``: the engine's float
        dtype (anything else is a bug, not a cast) or, for the step count, int64 (optax
        counts in int32; the cast is exact)."""
        out = np.asarray(array)
        wanted = np.dtype(dtype_of(name, self.dtype.name))
        if wanted.kind == "i":
            return out.astype(wanted)
        if out.dtype != wanted:
            raise RuntimeError(
                f"{name} came back as {out.dtype}, not {wanted}"
                + (" (was jax_enable_x64 turned off?)" if wanted == np.float64 else "")
            )
        return out

    def _check_ready(self) -> None:
        if self._params is None:
            raise RuntimeError("call set_state(params, opt_state) first")
