"""What the oracle finds: where the engines first disagreed, where every engine went
non-finite together, or where an engine raised; and what is needed to look at that step again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from comparisons.oracle.compare import Comparison, flat_index
from scratch.trace_schema import parse


@dataclass
class Divergence:
    """Where the first disagreement happened, and what still agreed upstream of it."""

    step: int
    epoch: int
    batch: int
    comparison: Comparison
    upstream_agreed: list[str]  # the tensors before it, in dataflow order, at that step
    look_at: str = ""  # where the engine under test computes the tensor (scratch: its functions)

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
            "under_test_value": c.under_test_value,
            "reference_value": c.reference_value,
            "max_abs": c.max_abs,
            "max_rel": c.max_rel,
            "allowed": c.allowed,
            "problem": c.problem,
            "nonfinite": c.nonfinite,
            "upstream_agreed": self.upstream_agreed,
            "look_at": self.look_at,
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
    the engine under test had it, and as every reference was loaded), the batch, and every
    engine's trace (keyed by the engines' names)."""

    params: dict[str, np.ndarray]
    state: dict
    X: np.ndarray
    Y: np.ndarray
    traces: dict[str, dict[str, np.ndarray]]
    allowed: dict[str, np.ndarray] = field(default_factory=dict)  # roundoff, per tensor


@dataclass
class Diverged:
    """Every engine turned non-finite at the same tensor, in the same places: training
    diverged there (the engines agreed until then; nothing after it was verified)."""

    step: int
    epoch: int
    batch: int
    tensor: str
    engines: list[str]  # the engine under test first
    first_value: float  # its first non-finite value (nan, inf or -inf)
    index: tuple[int, ...]
    upstream_agreed: list[str]

    def describe(self) -> str:
        value = "NaN" if np.isnan(self.first_value) else f"{self.first_value}"
        at = f" at {list(self.index)}" if self.index else ""
        ours = self.engines[0]  # the engine under test
        if len(self.engines) > 1:  # the kinds may differ: inf in one engine, NaN in another
            what = f"non-finite in every engine, in the same places ({ours}'s first: {value}{at}; "
        else:
            what = f"{value} in {ours} (the only engine) ({f'first{at}; ' if at else ''}"
        return (
            f"training diverged at step {self.step} (epoch {self.epoch}, batch {self.batch}): "
            f"{self.tensor} became {what}the engines agreed until then; "
            f"nothing after it was verified)"
        )

    def as_dict(self) -> dict:
        tensor = parse(self.tensor)
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "tensor": self.tensor,
            "kind": tensor.kind,
            "layer": tensor.layer,
            "engines": self.engines,
            "value": self.first_value,
            "index": list(self.index),
            "upstream_agreed": self.upstream_agreed,
            "description": self.describe(),
        }


@dataclass
class EngineFailure:
    """An engine raised during a step: the exception, the innermost frame inside the
    engine's own package, and the tensors of the trace it had computed by then."""

    engine: str
    step: int
    epoch: int
    batch: int
    error: str  # the exception's type
    message: str  # its message, first line, at most ~200 characters
    where: str  # "scratch/optimizers.py:97 in update"
    computed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.engine} raised {self.error} at step {self.step} "
            f"(epoch {self.epoch}, batch {self.batch}) in {self.where}: {self.message}"
        )

    def as_dict(self) -> dict:
        return {
            "engine": self.engine,
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "error": self.error,
            "message": self.message,
            "where": self.where,
            "computed": self.computed,
            "description": self.describe(),
        }


MESSAGE_CHARS = 200


def package_of(engine) -> str:
    """The package an engine's code lives in: where an exception's frame is looked for."""
    return getattr(engine, "package", type(engine).__module__.split(".")[0])


def engine_failure(
    engine: str, package: str, step, error: BaseException
) -> tuple[EngineFailure, dict[str, np.ndarray]]:
    """The failure, and the trace tensors found in the failing call's frames inside
    ``package`` (the dicts of trace names a step builds as it goes). A frame is inside the
    package when its code runs in one of the package's modules (a function recompiled by the
    fault catalogue included)."""
    entries = []  # (frame, line) from the outermost call to the innermost
    tb = error.__traceback__
    while tb is not None:
        entries.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    inside = [
        (f, n) for f, n in entries if f.f_globals.get("__name__", "").split(".")[0] == package
    ]
    where = "?"
    if inside or entries:
        frame, line = (inside or entries)[-1]
        where = f"{_source(frame, package)}:{line} in {frame.f_code.co_name}"
    partial = _partial_trace([f for f, _ in inside])
    message = (str(error).splitlines() or [""])[0]
    if len(message) > MESSAGE_CHARS:
        message = message[:MESSAGE_CHARS] + "…"
    failure = EngineFailure(
        engine,
        step.index,
        step.epoch,
        step.batch,
        type(error).__name__,
        message,
        where,
        list(partial),
    )
    return failure, partial


def _source(frame, package: str) -> str:
    """The frame's file as the project names it: ``scratch/network.py`` from the module's
    name (a function recompiled by the fault catalogue has no file of its own), else the file
    from the package's folder on."""
    module = frame.f_globals.get("__name__", "")
    if module.split(".")[0] == package:
        return module.replace(".", "/") + ".py"
    parts = frame.f_code.co_filename.replace("\\", "/").split("/")
    return "/".join(parts[parts.index(package) :]) if package in parts else "/".join(parts)


COMPUTED = {"forward", "loss", "error_term", "gradient"}  # a dict holding these is a trace


def _partial_trace(frames: list) -> dict[str, np.ndarray]:
    """The arrays, under trace names, of every trace-like dict in these frames' locals (one
    that holds a forward value, the loss, an error term or a gradient; a dict of parameters
    or gradients keyed by parameter is not): what the engine had computed when it raised."""
    found: dict[str, np.ndarray] = {}
    for frame in frames:
        for value in frame.f_locals.values():
            if not isinstance(value, dict):
                continue
            named = {k: v for k, v in value.items() if _trace_kind(k) and isinstance(v, np.ndarray)}
            if any(_trace_kind(k) in COMPUTED for k in named):
                found.update(named)
    return found


def _trace_kind(name: object) -> str | None:
    if not isinstance(name, str):
        return None
    try:
        return parse(name).kind
    except KeyError:
        return None


def first_nonfinite(trace: dict, order: list[str]):
    """(tensor, index, value) of the first non-finite value of the trace, in dataflow order."""
    for name in order:
        if name in trace:
            value = np.asarray(trace[name], np.float64)
            bad = np.flatnonzero(~np.isfinite(value.reshape(-1)))
            if bad.size:
                return name, flat_index(bad[0], value.shape), float(value.reshape(-1)[bad[0]])
    return None
