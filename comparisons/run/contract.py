"""The engine contract, written once: what every engine offers the oracle.

Every engine implements it: the engine under test — this repository's ``scratch``
(``run/engines.py:ScratchEngine``), a course's layer-object MLP, a CuPy or an autograd-free
model — and the references the oracle checks it against (PyTorch's and JAX's in
``reference/``, a recorded set's replay in ``run/recorded.py``). Four methods and a factory,
nothing else; the ``Engine`` protocol below states them in code. What differs between the
engine under test and a reference is how the oracle drives it (``oracle/adapters.py``'s
adapters), never what it offers. The
oracle steps it through a run's mini-batches and, before each step, loads every reference
(PyTorch, JAX) with the state the engine under test reports; then it compares every tensor of
the step's trace. ``examples/layered_mlp.py`` implements it with nothing from this project.

The factory
    ``factory(mlp, optimizer, dtype) -> engine``, named on the command line as
    ``--engine module:factory`` (or, for an installed package, by the name it registers in
    the entry-point group ``backprop_oracle.engines``). It reads only these attributes:

    ``mlp.sizes``              layer widths ``(n_0, n_1, …, n_L)``
    ``mlp.n_layers``           L, the layers with weights
    ``mlp.activation_of(l)``   layer l's activation (l = 1..L): sigmoid, tanh, relu,
                               leaky_relu (slope 0.01), elu (α = 1), identity
    ``mlp.loss``               mse, bce, bce_logits, softmax_cross_entropy
    ``mlp.dropout``            p, the rate of inverted dropout on every hidden layer in
                               training (0: none); see ``step``
    ``mlp.batch_norm``         batch normalization between each hidden layer's linear map
                               and its activation (with ``mlp.bn_momentum`` m and
                               ``mlp.bn_eps`` ε; ``scratch/network.py`` states the
                               equations): parameters ``gammal``, ``betal`` and, in the
                               state, ``running_meanl``, ``running_varl``
    ``optimizer.name``         sgd, momentum, nesterov, adam, adamw, rmsprop
    ``optimizer.lr, momentum, beta1, beta2, alpha, eps, l2, weight_decay, clip_norm``
                               floats
    ``optimizer.lr_schedule``  "constant", "step" (``lr_step_size``, ``lr_gamma``) or
                               "cosine" (``lr_warmup``, ``lr_decay_steps``: integers;
                               ``lr_min``); ``scratch/optimizers.py:learning_rate`` gives
                               each formula
    ``dtype``                  "float64" or "float32": the dtype of every float it returns

The engine
    ``set_state(params, opt_state)``
        Start from these parameters and optimizer state (copy them: they may be read-only).
        ``params``: ``{"W1": (n_0, n_1), "b1": (n_1,), …}``, a row of X is one example.
        ``opt_state``: ``{"t": steps taken}`` and, per parameter p, ``momentum_<p>``
        (momentum, nesterov), ``adam_m_<p>`` and ``adam_v_<p>`` (adam, adamw) or
        ``rmsprop_v_<p>`` (rmsprop); with batch normalization, each hidden layer's running
        statistics ``running_meanl`` and ``running_varl`` (n_l,) too: ``predict``
        normalizes with them.
    ``state() -> (params, opt_state)``
        What its next step starts from, in the same layout.
    ``step(X, Y) -> trace``
        One training step on the batch ``X: (B, n_0)``, ``Y: (B, n_L)``; it keeps the new
        state. The trace is a dict of arrays named by the trace schema
        (``scratch/trace_schema.py`` gives every name, its shape and its meaning; a report's
        walkthrough shows each with its equation). Which names are required is below. What
        the engine keeps must be what the trace says: ``state()`` after the step is compared
        with the trace's new parameters and optimizer state, and ``t`` must go up by one.
        With dropout (``mlp.dropout`` = p > 0) it is called as ``step(X, Y, masks=masks)``:
        ``masks = {"M1": (B, n_1), …, "M{L-1}": …}``, each hidden layer's keep mask of 0s
        and 1s for this step (the engine draws none), to be applied as D_l = A_l·M_l/(1 - p),
        layer l + 1 reading D_l. The trace may then hold ``Ml`` (the mask it applied) and
        ``Dl`` (optional, as forward values are).
    ``predict(X) -> A_L``
        The network's output ``(n, n_L)`` with the current parameters.

Required and optional tensors
    Required: the loss, every gradient (``dWl``, ``dbl``, of the data loss alone) and every
    new parameter (``Wl``, ``bl``). Optional: forward values (``Zl``, ``Al``), error terms
    (``dZl``), updates (``ΔWl``), the step count ``t`` and the optimizer state. A missing
    optional tensor is reported as *not provided*, never as agreement; a missing required one
    is a disagreement. An engine that sets ``complete = True`` promises every tensor (scratch
    does), and then any missing tensor is a disagreement.

Names outside the schema are a disagreement too (a misspelt ``dw1`` must not pass unseen).
Arrays may be anything NumPy reads without help (NumPy, CPU PyTorch tensors, JAX arrays);
arrays on a GPU must be copied to the host first.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from scratch.trace_schema import (
    kind_of,
    parameter_shapes,
    running_names,
    state_names,
    trace_names,
)

METHODS = ("set_state", "state", "step", "predict")
REQUIRED_KINDS = ("loss", "gradient", "parameter")  # the new parameters are "parameter"


@runtime_checkable
class Engine(Protocol):
    """Every engine the oracle drives: the engine under test and every reference (see the
    module's text)."""

    def set_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None: ...

    def state(self) -> tuple[dict[str, np.ndarray], dict]: ...

    def step(self, X: np.ndarray, Y: np.ndarray, **given) -> dict[str, np.ndarray]: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...


EngineUnderTest = Engine  # the engine a run verifies: any engine


class ContractError(ValueError):
    """An engine under test that cannot be loaded or does not keep the contract: bad input,
    reported in one line (exit 2), not a verdict about its numbers."""


def required_names(n_layers: int, optimizer: str, batch_norm: bool = False) -> list[str]:
    """The trace tensors every engine under test must provide, in dataflow order."""
    names = trace_names(n_layers, optimizer, batch_norm=batch_norm)
    return [n for n in names if kind_of(n) in REQUIRED_KINDS]


def as_arrays(values: Mapping, where: str, copy: bool = False) -> dict:
    """``values`` with every value as a NumPy array (a CPU torch tensor or a JAX array converts
    without a copy, unless ``copy``); ``ContractError`` where NumPy cannot read one (a GPU
    array)."""
    if not isinstance(values, Mapping):
        raise ContractError(f"{where}: returned a {type(values).__name__}, not a dict of arrays")
    out = {}
    for name, value in values.items():
        try:
            out[name] = np.array(np.asarray(value)) if copy else np.asarray(value)
        except Exception as error:
            raise ContractError(
                f"{where}: {name} is a {type(value).__name__} NumPy cannot read ({error}); "
                "return NumPy arrays (CuPy: .get(); PyTorch: .cpu())"
            ) from error
    return out


def read_state(engine, mlp, optimizer, where: str) -> tuple[dict, dict]:
    """``engine.state()`` as arrays, checked: every parameter of the network in its shape, the
    step count ``t`` and every buffer of the optimizer; ``ContractError`` naming what is wrong
    (a broken state is the engine's, and must not surface as a reference's failure)."""
    try:
        got = engine.state()
    except Exception as error:
        raise ContractError(f"{where}: state() raised {type(error).__name__}: {error}") from error
    if not (isinstance(got, tuple | list) and len(got) == 2):
        raise ContractError(f"{where}: state() must return (params, opt_state); got {got!r:.80}")
    params, opt_state = (as_arrays(part, f"{where}: state()") for part in got)
    batch_norm = bool(getattr(mlp, "batch_norm", False))
    shapes = parameter_shapes(tuple(mlp.sizes), batch_norm)
    wanted = ["t", *(s for p in shapes for s in state_names(optimizer.name, p))]
    wanted += running_names(mlp.n_layers, batch_norm)
    for found, expected, what in ((params, shapes, "parameters"), (opt_state, wanted, "state")):
        missing = [k for k in expected if k not in found]
        if missing:
            raise ContractError(f"{where}: state()'s {what} lack {', '.join(missing)}")
    for p, shape in shapes.items():
        for name, value in (
            (p, params[p]),
            *((s, opt_state[s]) for s in state_names(optimizer.name, p)),
        ):
            if value.shape != tuple(shape):
                raise ContractError(
                    f"{where}: state()'s {name} has shape {value.shape}, not {tuple(shape)} "
                    "(W is (n_in, n_out))"
                )
    return params, opt_state


def load_state(engine, params: dict, opt_state: dict, where: str) -> None:
    """``engine.set_state``; ``ContractError`` where it raises."""
    try:
        engine.set_state(params, opt_state)
    except Exception as error:
        raise ContractError(
            f"{where}: set_state() raised {type(error).__name__}: {error}"
        ) from error


def check_takes_masks(engine: object, where: str) -> None:
    """``ContractError`` unless ``engine.step`` takes the keyword ``masks`` (a run with
    dropout gives it the step's masks)."""
    try:
        inspect.signature(engine.step).bind(None, None, masks={})
    except TypeError:
        raise ContractError(
            f"{where}: this run has dropout, and its step() takes no masks: dropout needs "
            "step(X, Y, masks), masks the step's keep masks (see comparisons/run/contract.py)"
        ) from None
    except ValueError:  # no signature to read (a builtin): its call will say
        pass


def check_engine(engine: object, where: str) -> None:
    """Raise ``ContractError`` unless ``engine`` has every method of the contract."""
    missing = [m for m in METHODS if not callable(getattr(engine, m, None))]
    if missing:
        raise ContractError(
            f"{where} made a {type(engine).__name__}, which lacks {', '.join(missing)}: an "
            f"engine under test needs {', '.join(METHODS)} (see comparisons/run/contract.py)"
        )
