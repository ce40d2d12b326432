"""Scratch's engine, and the factory that makes any engine by name.

Every engine — scratch, PyTorch, JAX — implements the one engine contract,
``run/contract.py`` (``Engine``: ``set_state``, ``state``, ``step``, ``predict``).

The references are named here as ``module:class`` and imported only when a run asks for
them, so that a scratch-only command never loads a framework.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping

import numpy as np

from comparisons.run.inputs import RunInputs
from comparisons.run.spec import SpecError
from data import cache_root
from scratch import optimizers
from scratch.config import MLP, Optimizer
from scratch.network import evaluate
from scratch.training import train_step

Params = dict[str, np.ndarray]

REFERENCES = {
    "torch": "reference.torch_engine:TorchEngine",
    "jax": "reference.jax_engine:JaxEngine",
}
# Where the references run: the CPU, or the machine's GPU, which each framework names its own
# way (PyTorch "cuda", JAX "gpu"). scratch always runs on the CPU.
DEVICES = ("cpu", "gpu")
FRAMEWORK_DEVICE = {"torch": {"gpu": "cuda"}, "jax": {}}


class ScratchEngine:
    """The NumPy model under test, behind the same interface as the references."""

    name = "scratch"
    complete = True  # every tensor of the trace schema is required of it (contract.py)

    def __init__(self, mlp: MLP, optimizer: Optimizer, dtype: str = "float64"):
        self.mlp, self.optimizer, self.dtype = mlp, optimizer, dtype
        self._params: Params = {}
        self._state: dict = {}
        self._checked: set[tuple[int, ...]] = set()

    def set_state(self, params: Params, opt_state: dict) -> None:
        self._params, self._state = dict(params), dict(opt_state)

    def state(self) -> tuple[Params, dict]:
        """Parameters and optimizer state: what lockstep loads into every other engine."""
        return self._params, self._state

    def step(
        self, X: np.ndarray, Y: np.ndarray, masks: dict | None = None
    ) -> dict[str, np.ndarray]:
        # scratch checks its inputs once per batch shape: the data were checked when loaded,
        # and the oracle compares every shape of every step anyway
        check = X.shape not in self._checked
        trace, self._params, self._state = train_step(
            self.mlp, self.optimizer, self._params, self._state, X, Y, check=check, masks=masks
        )
        self._checked.add(X.shape)
        return trace

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A_L in evaluation: no dropout; batch normalization with the running statistics."""
        return evaluate(self.mlp, self._params, X, self._state)

    def params(self) -> Params:
        return dict(self._params)


def initial_state(optimizer: Optimizer, params: Params) -> dict:
    """Scratch's zero optimizer state: the common start of every engine."""
    return optimizers.init_state(optimizer, params)


def make_engine(name: str, mlp: MLP, optimizer: Optimizer, dtype: str, device: str = "cpu"):
    """An engine by name; a reference's framework is imported only when it is asked for.

    PyTorch gets one intra-op thread on the CPU: the oracle's tensors are far too small for
    threads to pay, and on a small or busy machine its OpenMP pool spins while it waits, so a
    0.3 ms step takes milliseconds. One thread also keeps the numbers independent of the
    core count (the traces are bitwise the same).
    """
    if name == "scratch":
        return ScratchEngine(mlp, optimizer, dtype)
    if name not in REFERENCES:
        raise ValueError(f"unknown engine {name!r}; choose scratch, {', '.join(REFERENCES)}")
    if name == "jax":
        for variable, value in JAX_ENVIRONMENT.items():
            os.environ.setdefault(variable, value)
        persistent_jax_cache()
    if name == "torch" and device == "cpu":
        importlib.import_module("torch").set_num_threads(1)
    module, _, cls = REFERENCES[name].partition(":")
    device = framework_device(name, device)
    engine = getattr(importlib.import_module(module), cls)(mlp, optimizer, dtype, device)
    engine.name = name
    return engine


def framework_device(name: str, device: str) -> str:
    """The reference ``name``'s own name for ``device`` ("gpu" is PyTorch's "cuda")."""
    return FRAMEWORK_DEVICE[name].get(device, device)


def persistent_jax_cache() -> None:
    """JAX's persistent compilation cache, in the tool's user cache, unless the user chose one:
    every compiled step is kept on disk, so a second run (or another test worker) of the same
    shapes loads it instead of compiling again. Every compilation is kept, however quick
    (JAX's default keeps only those over a second; ours take about half of one)."""
    jax = importlib.import_module("jax")
    if jax.config.jax_compilation_cache_dir is None:
        for option, value in jax_cache_settings().items():
            jax.config.update(option, value)


# Read by JAX when its backends start (the first jax.devices() or computation), so set before:
# JAX on a GPU takes memory as it needs it instead of 75% of the card up front. The oracle's
# arrays are tiny, and several processes share one GPU: the test processes, or a run's
# references in workers (each process starts every backend JAX has, even to compute on the
# CPU). With JAX's default, 16 test processes on one H200 ran out of its memory. A value the
# user set is kept.
JAX_ENVIRONMENT = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def jax_cache_settings() -> dict[str, object]:
    """``persistent_jax_cache``'s JAX options (each also read from the environment variable
    of its name in capitals, before JAX is imported)."""
    return {
        "jax_compilation_cache_dir": str(cache_root() / "jax"),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
    }


def jax_environment() -> dict[str, str]:
    """What gives a process run's JAX settings as environment variables, set before JAX is
    imported (how the test suite shares them): the persistent cache and JAX_ENVIRONMENT."""
    cache = {option.upper(): str(value) for option, value in jax_cache_settings().items()}
    return {**cache, **JAX_ENVIRONMENT}


def make_references(inputs: RunInputs, device: str = "cpu", workers: Mapping | None = None) -> dict:
    """One engine per reference the spec names (the engine under test is the oracle's); on
    ``device`` "gpu", a framework that sees no GPU is bad input (SpecError). A reference in
    ``workers`` (a worker process of ``oracle/workers.py``, started earlier) is built there:
    an error building it comes with the worker's first answer."""
    refs, workers = {}, workers or {}
    for name in inputs.spec.engines:
        settings = (name, inputs.mlp, inputs.optimizer, inputs.spec.dtype, device)
        if name in workers:
            workers[name].build(make_reference, *settings)
            refs[name] = workers[name]
        else:
            refs[name] = make_reference(*settings)
    return refs


def make_reference(name: str, mlp: MLP, optimizer: Optimizer, dtype: str, device: str):
    """``make_engine`` for a reference, where a framework that sees no GPU is bad input."""
    try:
        return make_engine(name, mlp, optimizer, dtype, device)
    except ValueError as err:
        if device == "cpu":
            raise
        raise SpecError(
            f"--device {device}: {err}; run on a machine whose {name} sees a GPU, or "
            f"leave --device out (the references on the CPU)"
        ) from None
