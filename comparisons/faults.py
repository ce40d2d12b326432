"""Deliberate faults in scratch, applied in memory, to prove that the oracle catches them.

Each fault is a context manager that patches scratch while it is active — by swapping a
function or a table entry, or by recompiling one function from its source with one line
changed — and restores everything on exit. Files on disk are never touched.
"""

from __future__ import annotations
import __future__

import contextlib
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from unittest import mock

import scratch.activations
import scratch.losses
import scratch.network
import scratch.optimizers


def recompiled(module: ModuleType, name: str, old: str, new: str) -> Callable:
    """``module.name`` recompiled from its source with ``old`` replaced by ``new`` (once).

    The new function keeps the module's globals, so it calls the module's other functions.
    """
    source = textwrap.dedent(inspect.getsource(getattr(module, name)))
    if source.count(old) != 1:
        raise ValueError(f"{module.__name__}.{name}: expected one {old!r} in its source")
    code = compile(
        source.replace(old, new),
        f"<fault in {module.__name__}.{name}>",
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    namespace: dict = {}
    exec(code, module.__dict__, namespace)
    return namespace[name]


@contextlib.contextmanager
def edited_function(module: ModuleType, name: str, old: str, new: str) -> Iterator[None]:
    """While active, ``module.name`` is the function with one edit (see ``recompiled``)."""
    with mock.patch.object(module, name, recompiled(module, name, old, new)):
        yield


@contextlib.contextmanager
def edited_loss(name: str, old: str, new: str) -> Iterator[None]:
    """Edit a loss function; the LOSSES table holds the function itself, so patch it too."""
    fn = recompiled(scratch.losses, name, old, new)
    entry = scratch.losses.LOSSES[name]._replace(fn=fn)
    with (
        mock.patch.object(scratch.losses, name, fn),
        mock.patch.dict(scratch.losses.LOSSES, {name: entry}),
    ):
        yield


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    patch: Callable[[], contextlib.AbstractContextManager]
    expected_tensor: str  # the first tensor, in dataflow order, that the fault changes
    spec: dict = field(default_factory=dict)  # run-spec changes under which the fault shows


def _sigmoid_derivative_sign() -> contextlib.AbstractContextManager:
    act = scratch.activations
    wrong = act.Activation(act.sigmoid, lambda Z, A: -A * (1.0 - A))
    return mock.patch.dict(act.ACTIVATIONS, {"sigmoid": wrong})


FAULTS = (
    Fault(
        "sigmoid-derivative-sign",
        "sigmoid' = -A(1 - A): the sign of an activation derivative",
        _sigmoid_derivative_sign,
        expected_tensor="dZ2",
    ),
    Fault(
        "missing-1/m",
        "bce_logits' gradient without the 1/B of the mean",
        lambda: edited_loss("bce_logits", "(sigmoid(A) - Y) / A.size", "(sigmoid(A) - Y)"),
        expected_tensor="dZ3",
    ),
    Fault(
        "transposed-weight-in-error-term",
        "dZ_l = (dZ_{l+1} @ W_{l+1}) * g'(Z_l): W where W.T belongs (reshaped to fit)",
        lambda: edited_function(
            scratch.network, "hidden_error", "W_next.T", "W_next.reshape(W_next.shape[::-1])"
        ),
        expected_tensor="dZ1",
        spec={"hidden": (4, 4)},  # W2 square: the reshape is W2 itself, not its transpose
    ),
    Fault(
        "bias-gradient-not-summed",
        "db_l = dZ_l[0]: one row of the batch instead of the sum",
        lambda: edited_function(scratch.network, "bias_grad", "dZ.sum(axis=0)", "dZ[0]"),
        expected_tensor="db3",
    ),
    Fault(
        "momentum-sign",
        "v ← μ·v - g: the sign of the momentum update",
        lambda: edited_function(
            scratch.optimizers,
            "update",
            'opt.momentum * state[f"momentum_{p}"] + g',
            'opt.momentum * state[f"momentum_{p}"] - g',
        ),
        expected_tensor="ΔW1",
        spec={"optimizer": "momentum", "lr": 0.1},
    ),
)
