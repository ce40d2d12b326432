"""Final loss and accuracy of each engine on every split, from the engine's own outputs.

The loss and the decision rule applied to those outputs are scratch's (they are the task's
definition, not part of what is being verified); the outputs themselves are each engine's.
"""

from __future__ import annotations

from collections.abc import Mapping

from comparisons.run.engines import Engine
from comparisons.run.inputs import RunInputs
from scratch.network import loss_and_output_grad
from scratch.training import accuracy_of


def evaluate(inputs: RunInputs, engines: Mapping[str, Engine]) -> dict[str, dict[str, dict]]:
    """{engine: {split: {"loss": …, "accuracy": …}}} with each engine's current parameters."""
    out: dict[str, dict[str, dict]] = {}
    for name, engine in engines.items():
        out[name] = {}
        for split, (X, Y) in inputs.splits.items():
            A_L = engine.predict(X)
            out[name][split] = {
                "loss": float(loss_and_output_grad(inputs.mlp, A_L, Y)[0]),
                "accuracy": accuracy_of(inputs.mlp, A_L, Y),
            }
    return out
