"""Helpers for the lockstep tests: small synthetic problems and the engine parameters."""

from __future__ import annotations

import pytest

from comparisons.oracle.lockstep import LockstepResult, lockstep
from comparisons.run.engines import make_engine
from comparisons.run.inputs import RunInputs, build_inputs
from comparisons.run.spec import RunSpec

REFERENCES = [
    pytest.param("torch", marks=pytest.mark.torch, id="torch"),
    pytest.param("jax", marks=pytest.mark.jax, id="jax"),
]

# (loss, output activation, classes): every output layer each loss fits.
HEADS = [
    ("mse", "identity", 2),
    ("mse", "sigmoid", 2),
    ("mse", "tanh", 3),
    ("bce", "sigmoid", 2),
    ("bce_logits", "identity", 2),
    ("softmax_cross_entropy", "identity", 3),
]
ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "identity"]
OPTIMIZERS = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"]
# 12 rows: batch 1 gives 12 one-row steps; batch 5 leaves a partial last batch of 2.
BATCH_SIZES = [pytest.param(1, id="batch1"), pytest.param(5, id="batch5-partial")]
OPTIMIZER_SETTINGS = {
    "sgd": {"lr": 0.1, "l2": 0.01},  # L2 rides along with sgd so that it is covered too
    "momentum": {"lr": 0.02, "momentum": 0.9},
    "nesterov": {"lr": 0.02, "momentum": 0.8},
    "adam": {"lr": 0.01},
    "adamw": {"lr": 0.01, "weight_decay": 0.05},
    "rmsprop": {"lr": 0.01, "alpha": 0.9},
}


def synthetic_spec(**changes: object) -> RunSpec:
    """A 12-row synthetic problem, trained for two epochs; ``changes`` override."""
    base = {
        "dataset": "synthetic",
        "synthetic_rows": 12,
        "synthetic_features": 4,
        "hidden": (6, 5),
        "epochs": 2,
        "batch_size": 5,
        "engines": ("scratch",),
    }
    base.update(OPTIMIZER_SETTINGS[changes.get("optimizer", "sgd")])
    return RunSpec().replace(**{**base, **changes})


def head(loss: str, output: str, classes: int) -> dict:
    return {"loss": loss, "output": output, "synthetic_classes": classes}


def run(problem: RunInputs, reference: str, **kwargs) -> LockstepResult:
    engine = make_engine(reference, problem.mlp, problem.optimizer, problem.spec.dtype)
    return lockstep(problem, {reference: engine}, **kwargs)


def assert_lockstep_agrees(spec: RunSpec, reference: str) -> LockstepResult:
    result = run(build_inputs(spec), reference, stop_at_first=True)
    if not result.agree:
        pytest.fail(result.first_divergence.describe(), pytrace=False)
    assert result.steps_run == len(build_inputs(spec).schedule)
    return result


BROKEN_SCRATCH = (
    "scratch itself disagrees with the references on this test's spec, before any fault is "
    "applied: fix scratch first (`python -m comparisons check` names the equation)"
)


def skip_unless_sound(agrees: bool) -> None:
    """Tests that prove the oracle with deliberate faults need a sound scratch to start from;
    on a broken one they skip with one reason, so the failures a user sees are the few tests
    that name the broken equation."""
    if not agrees:
        pytest.skip(BROKEN_SCRATCH)


class RaisesAtStep:
    """A reference that raises at its ``at``-th step and is PyTorch's otherwise."""

    def __init__(self, engine, at: int):
        self.engine, self.at, self.steps, self.name = engine, at, 0, "torch"

    def set_state(self, params, opt_state):
        self.engine.set_state(params, opt_state)

    def step(self, X, Y):
        self.steps += 1
        if self.steps == self.at + 1:
            raise RuntimeError("a reference that fails mid-run")
        return self.engine.step(X, Y)

    def predict(self, X):
        return self.engine.predict(X)

    def state(self):
        return self.engine.state()

    def params(self):
        return self.engine.params()
