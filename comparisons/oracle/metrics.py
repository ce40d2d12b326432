"""Final loss and accuracy of each engine on every split, from the engine's own outputs.

The loss and the decision rule applied to those outputs are scratch's (they are the task's
definition, not part of what is being verified); the outputs themselves are each engine's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from comparisons.oracle.divergence import EngineFailure, engine_failure
from comparisons.run.contract import ContractError, Engine
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import UnderTest
from scratch.network import loss_and_output_grad
from scratch.training import accuracy_of


def evaluate_all(
    inputs: RunInputs,
    under_test: UnderTest,
    params: dict,
    state: dict,
    references: Mapping[str, Engine],
) -> tuple[dict | None, EngineFailure | None]:
    """``evaluate`` for the engine under test, with ``params`` and what of ``state`` its
    evaluation reads (batch normalization's running statistics), and every reference; where
    the engine under test's ``predict`` raises, no metrics and the failure (a bug of the
    engine's, a verdict like any other: never a crash of the oracle)."""
    engine = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    fresh = initial_state(inputs.optimizer, params)
    engine.set_state(params, {**fresh, **{k: v for k, v in state.items() if k in fresh}})
    try:
        ours = evaluate(inputs, {under_test.name: engine})[under_test.name]
    except ContractError:
        raise
    except Exception as error:
        last = inputs.schedule.steps[-1]
        failure, _ = engine_failure(under_test.name, under_test.package, last, error)
        failure.message = f"predict, on the final parameters: {failure.message}"
        return None, failure
    return {under_test.name: ours, **evaluate(inputs, references)}, None


def evaluate(inputs: RunInputs, engines: Mapping[str, Engine]) -> dict[str, dict[str, dict]]:
    """{engine: {split: {"loss": …, "accuracy": …}}} with each engine's current parameters."""
    out: dict[str, dict[str, dict]] = {}
    for name, engine in engines.items():
        out[name] = {}
        for split, (X, Y) in inputs.splits.items():
            A_L = np.asarray(engine.predict(X))
            if A_L.shape != (len(X), inputs.mlp.sizes[-1]):
                raise ContractError(
                    f"{name}: predict() returned shape {A_L.shape} for {len(X)} rows, "
                    f"not {(len(X), inputs.mlp.sizes[-1])}"
                )
            out[name][split] = {
                "loss": float(loss_and_output_grad(inputs.mlp, A_L, Y)[0]),
                "accuracy": accuracy_of(inputs.mlp, A_L, Y),
            }
    return out
