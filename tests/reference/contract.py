"""What the reference tests share: the references by name, how to make one, a batch, and the
one helper that steps an engine beside scratch and compares every trace tensor through the
oracle's ``assert_traces_agree`` with its roundoff allowances (none of our own).

The engines are imported by name when a test makes one, never at the top, so that collecting
the tests needs neither torch nor jax (tests/conftest.py skips the marked tests where one is
absent).
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

import numpy as np
import pytest

from comparisons.oracle.compare import assert_traces_agree
from comparisons.oracle.roundoff import RoundoffStep, allowances
from scratch.config import MLP, Optimizer
from scratch.initializers import init_params
from scratch.network import dropout_masks
from scratch.optimizers import init_state
from scratch.training import train_step
from tests.scratch.cases import targets

REFERENCES = [
    pytest.param("torch", marks=pytest.mark.torch, id="torch"),
    pytest.param("jax", marks=pytest.mark.jax, id="jax"),
]
ENGINES = {
    "torch": ("reference.torch_engine", "TorchEngine"),
    "jax": ("reference.jax_engine", "JaxEngine"),
}

B = 7  # batch size: odd, so that no mean over the batch is a power of two by luck

OPTIMIZERS = [
    Optimizer("sgd", lr=0.1),
    Optimizer("momentum", lr=0.1, momentum=0.9),
    Optimizer("nesterov", lr=0.1, momentum=0.9),
    Optimizer("adam", lr=0.01),
    Optimizer("adamw", lr=0.01, weight_decay=0.1),
    Optimizer("rmsprop", lr=0.01, alpha=0.9),  # α off its default, so that it is seen read
]


def with_l2(opt: Optimizer, l2: float = 0.1) -> Optimizer:
    return dataclasses.replace(opt, l2=l2)


STEP_DECAY = {"lr_schedule": "step", "lr_step_size": 2, "lr_gamma": 0.3}
# five updates: two of warm-up, then a cosine over six (not finished within the five)
COSINE = {"lr_schedule": "cosine", "lr_warmup": 2, "lr_min": 0.001, "lr_decay_steps": 8}


def both_references(cases: list, jax_quick: set[str]) -> list:
    """The pytest params ``cases`` (ids given, no reference) as params (reference, *case) for
    each reference: against PyTorch each case as it is marked; against JAX, only the cases
    whose ids ``jax_quick`` names stay in the quick tier, the others are slow (every JAX case
    is a compilation: ~0.15 s even from the persistent cache, PyTorch's ~10 ms)."""
    unknown = jax_quick - {case.id for case in cases}
    assert not unknown, f"jax_quick names no case: {sorted(unknown)}"
    params = []
    for reference in REFERENCES:
        (name,) = reference.values
        for case in cases:
            marks = [*reference.marks, *case.marks]
            if name == "jax" and case.id not in jax_quick:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(name, *case.values, id=f"{case.id}-{name}", marks=marks))
    return params


def label(opt: Optimizer) -> str:
    return opt.name + ("+l2" if opt.l2 else "")


def engine_module(reference: str) -> ModuleType:
    return importlib.import_module(ENGINES[reference][0])


def make(reference: str, mlp: MLP, opt: Optimizer, dtype: str = "float64", device: str = "cpu"):
    """The reference engine ``reference`` ("torch" or "jax"), its framework imported now."""
    engine_class = getattr(engine_module(reference), ENGINES[reference][1])
    return engine_class(mlp, opt, dtype=dtype, device=device)


def start(mlp: MLP, opt: Optimizer, dtype: str = "float64", seed: int = 0) -> tuple[dict, dict]:
    """scratch's first parameters and its zero optimizer state (t = 0)."""
    params = init_params(mlp, seed=seed, dtype=dtype)
    return params, init_state(opt, params)


def batch(rng: np.random.Generator, mlp: MLP, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """X (B, n_0) and targets Y (B, n_L) that fit the loss, in ``dtype``."""
    X = rng.normal(size=(B, mlp.sizes[0])).astype(dtype)
    return X, targets(rng, mlp.loss, B, mlp.sizes[-1]).astype(dtype)


def steps_agree(
    engine, mlp: MLP, opt: Optimizer, params: dict, state: dict, batches, lockstep: bool = True
) -> tuple[dict, dict]:
    """RoundoffStep ``engine`` and scratch's ``train_step`` on each batch; every trace tensor must
    agree within the oracle's tolerances. Returns scratch's final parameters and state.

    ``lockstep``: the engine is loaded with scratch's parameters and state before every step
    (so the second step starts from nonzero momentum buffers, Adam moments, t = 1); without
    it, once, and the engine runs free on its own state.
    """
    for i, (X, Y) in enumerate(batches):
        if lockstep or i == 0:
            engine.set_state(params, state)
        given = {"masks": dropout_masks(mlp, len(X), 0, i, X.dtype)} if mlp.dropout else {}
        got = engine.step(X, Y, **given)
        expected, new_params, new_state = train_step(mlp, opt, params, state, X, Y, **given)
        allowed = allowances(RoundoffStep(mlp, opt, params, state, X, Y), expected, X.dtype.name)
        assert_traces_agree(expected, got, engine.name, where=f"step {i}", allowed=allowed)
        params, state = new_params, new_state
    return params, state
