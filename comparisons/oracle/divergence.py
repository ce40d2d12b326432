"""Where the engines first disagreed, and what is needed to look at that step again."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comparisons.oracle.compare import Comparison


@dataclass
class Divergence:
    """Where the first disagreement happened, and what still agreed upstream of it."""

    step: int
    epoch: int
    batch: int
    comparison: Comparison
    upstream_agreed: list[str]  # the tensors before it, in dataflow order, at that step

    def as_dict(self) -> dict:
        c = self.comparison
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "tensor": c.tensor,
            "kind": c.kind,
            "layer": c.layer,
            "engine": c.engine,
            "index": list(c.index),
            "scratch_value": c.scratch_value,
            "reference_value": c.reference_value,
            "max_abs": c.max_abs,
            "max_rel": c.max_rel,
            "allowed": c.allowed,
            "problem": c.problem,
            "upstream_agreed": self.upstream_agreed,
        }

    def describe(self) -> str:
        where = f"step {self.step} (epoch {self.epoch}, batch {self.batch})"
        layer = f", layer {self.comparison.layer}" if self.comparison.layer else ""
        upstream = ", ".join(self.upstream_agreed[-4:]) or "nothing"
        return (
            f"first divergence at {where}: {self.comparison.tensor} ({self.comparison.kind}"
            f"{layer}) — {self.comparison.describe()}; upstream still agreed: "
            f"{'…, ' if len(self.upstream_agreed) > 4 else ''}{upstream}"
        )


@dataclass
class DivergentStep:
    """Everything needed to re-examine the first divergent step: the state before it (as
    scratch had it, and as every reference was loaded), the batch, and every engine's trace."""

    params: dict[str, np.ndarray]
    state: dict
    X: np.ndarray
    Y: np.ndarray
    traces: dict[str, dict[str, np.ndarray]]
