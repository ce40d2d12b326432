"""The engine interface, scratch's engine, and the factory that makes any engine by name.

Every engine — scratch, PyTorch, JAX — offers the same four calls (the contract is written
out in ``reference/__init__.py``): ``set_state(params, opt_state)``, ``step(X, Y) -> trace``,
``predict(X) -> A_L`` and ``params()``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from scratch import optimizers
from scratch.network import MLP, forward
from scratch.optimizers import Optimizer
from scratch.training import train_step

Params = dict[str, np.ndarray]


class Engine(Protocol):
    name: str

    def set_state(self, params: Params, opt_state: dict) -> None: ...

    def step(self, X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def params(self) -> Params: ...


class ScratchEngine:
    """The NumPy model under test, behind the same interface as the references."""

    name = "scratch"

    def __init__(self, mlp: MLP, optimizer: Optimizer, dtype: str = "float64"):
        self.mlp, self.optimizer, self.dtype = mlp, optimizer, dtype
        self._params: Params = {}
        self._state: dict = {}

    def set_state(self, params: Params, opt_state: dict) -> None:
        self._params, self._state = dict(params), dict(opt_state)

    def state(self) -> tuple[Params, dict]:
        """Parameters and optimizer state: what lockstep loads into every other engine."""
        return self._params, self._state

    def step(self, X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
        trace, self._params, self._state = train_step(
            self.mlp, self.optimizer, self._params, self._state, X, Y
        )
        return trace

    def predict(self, X: np.ndarray) -> np.ndarray:
        return forward(self.mlp, self._params, X)[f"A{self.mlp.n_layers}"]

    def params(self) -> Params:
        return dict(self._params)


def initial_state(optimizer: Optimizer, params: Params) -> dict:
    """Scratch's zero optimizer state: the common start of every engine."""
    return optimizers.init_state(optimizer, params)


def make_engine(name: str, mlp: MLP, optimizer: Optimizer, dtype: str, device: str = "cpu"):
    """An engine by name; a reference's framework is imported only when it is asked for."""
    if name == "scratch":
        return ScratchEngine(mlp, optimizer, dtype)
    if name == "torch":
        from reference.torch_mlp import TorchMLP

        engine = TorchMLP(mlp, optimizer, dtype=dtype, device=device)
    elif name == "jax":
        from reference.jax_mlp import JaxMLP

        engine = JaxMLP(mlp, optimizer, dtype=dtype, device=device)
    else:
        raise ValueError(f"unknown engine {name!r}; choose scratch, torch or jax")
    engine.name = name
    return engine
