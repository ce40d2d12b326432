"""What a disagreement looks like, beyond who is wrong: a documented convention, or a loss of
precision in the engine's formula.

At the first divergent step the engine under test's tensor is set beside what the
references' own operands give under each alternative convention of the conventions table
(docs/numerics.md#conventions): where it matches one, the engine follows that convention and the
references the other, and the message says so and where the table explains it. A
difference of about an ulp of the tensor's scale that is many ulps of the value itself is
cancellation in the engine's formula (the right equation, computed so that a small value
loses its digits), which is told apart from a wrong equation.
"""

from __future__ import annotations

import numpy as np

from comparisons.oracle.divergence import Divergence, DivergentStep
from comparisons.run.inputs import RunInputs
from scratch.optimizers import learning_rate
from scratch.trace_schema import layer_of

CONVENTIONS = "docs/numerics.md#conventions"
# The conventions table's rows, by the name the messages give each convention.
ROWS = {
    "BCE gradient floor": "BCE backward at saturation",
    "derivative at a kink": "leaky ReLU at Z = 0",
    "dropout scaling": "dropout's scaling",
    "batch norm running variance": "batch norm's running variance",
    "batch norm momentum": "batch norm's momentum",
    "schedule counting": "when the learning rate steps",
}
# A tensor whose every difference is within SCALE_ULPS ulps of its operands' scale, and one
# of them at least MANY_ULPS ulps of its own value, lost precision (a few ulps of the value
# are roundoff, and the allowance's).
SCALE_ULPS = 4.0
MANY_ULPS = 32.0
BCE_FLOOR = 1e-12  # PyTorch's floor of A(1 - A) in BCE's gradient


def recognise(
    inputs: RunInputs, divergence: Divergence, at: DivergentStep, ours: str = "scratch"
) -> dict:
    """{"convention": name, "precision": {...}} for what the disagreement matches (either or
    neither), and "note": the sentence the explanation adds ("" when nothing matched).
    ``ours``: the engine under test's name, its trace's key in ``at.traces``."""
    found: dict = {}
    c = divergence.comparison
    if c.problem or c.engine == ours:
        return found
    ours = at.traces.get(ours, {}).get(c.tensor)
    theirs = at.traces.get(c.engine, {})
    if ours is None or c.tensor not in theirs:
        return found
    ours = np.asarray(ours, np.float64)
    with np.errstate(all="ignore"):
        name = _convention(inputs, c.tensor, ours, theirs, at)
    notes = []
    if name:
        found["convention"] = name
        notes.append(
            f"this matches the {name} difference: see {CONVENTIONS} ('{ROWS[name]}'); the "
            "references follow the convention this project takes"
        )
    scale = _operands_scale(inputs, c, theirs)
    precision = _precision(c, ours, np.asarray(theirs[c.tensor]), scale)
    if precision:
        found["precision"] = precision
        notes.append(precision["note"])
    found["note"] = "; ".join(notes)
    return found


def _close(ours: np.ndarray, alternative: np.ndarray, dtype) -> bool:
    """Equal up to the roundings two ways of computing one value differ by."""
    eps = float(np.finfo(dtype).eps)
    alternative = np.asarray(alternative, np.float64)
    scale = float(np.max(np.abs(alternative), initial=0.0))
    tol = 64.0 * eps * (np.abs(alternative) + 1e-3 * scale)
    same_place = np.isfinite(ours) & np.isfinite(alternative)
    return bool(same_place.all() and np.all(np.abs(ours - alternative) <= np.maximum(tol, 0.0)))


def _convention(inputs, tensor, ours, theirs, at) -> str | None:
    mlp, dtype = inputs.mlp, np.dtype(inputs.spec.dtype)
    ref = np.asarray(theirs[tensor], np.float64)
    layer = layer_of(tensor)
    L = mlp.n_layers
    if tensor == f"dZ{L}" and mlp.loss == "bce" and f"A{L}" in theirs:
        A = np.asarray(theirs[f"A{L}"], np.float64)
        p = A * (1.0 - A)
        floored = p < BCE_FLOOR
        # without the floor, σ'(Z) cancels A(1 - A): dZ = (A - Y) / N; where A(1 - A) is
        # exactly 0 an engine may take either (0 · anything, or the cancelled form)
        unfloored = np.where(floored, (A - np.asarray(at.Y, np.float64)) / A.size, ref)
        either = np.where(p == 0, ref, unfloored)
        if floored.any() and (_close(ours, unfloored, dtype) or _close(ours, either, dtype)):
            return "BCE gradient floor"
    if tensor.startswith("dZ") and layer is not None and mlp.activation_of(layer) in KINKED:
        into = theirs.get(f"N{layer}", theirs.get(f"Z{layer}"))
        if into is not None:
            at_kink = np.asarray(into) == 0
            # the other side's slope at Z = 0: 1 (JAX's `>=`) where this project takes 0 or s
            slope = {"relu": 0.0, "leaky_relu": LEAKY}[mlp.activation_of(layer)]
            with np.errstate(divide="ignore", invalid="ignore"):
                other = np.where(at_kink, ref / slope if slope else np.nan, ref)
            differs = ~np.isclose(ours, ref, rtol=64 * np.finfo(dtype).eps, atol=0.0)
            if at_kink.any() and differs.any() and at_kink[differs].all():
                if not slope or _close(ours[at_kink], other[at_kink], dtype):
                    return "derivative at a kink"
    if tensor.startswith("D") and layer is not None and mlp.dropout:
        p = mlp.dropout
        for factor in (1.0 - p, (1.0 - p) / p):  # not inverted; p taken as the keep rate
            if _close(ours, ref * factor, dtype):
                return "dropout scaling"
    if tensor.startswith("running_") and layer is not None:
        m, B = inputs.spec.bn_momentum, len(at.X)
        old = np.asarray(at.state.get(tensor), np.float64)
        batch = (ref - (1.0 - m) * old) / m if m else None  # the batch's statistic
        if batch is not None:
            if tensor.startswith("running_var") and B > 1:
                if _close(ours, (1.0 - m) * old + m * batch * (B - 1) / B, dtype):
                    return "batch norm running variance"
            if _close(ours, m * old + (1.0 - m) * batch, dtype):
                return "batch norm momentum"
    if tensor == "lr" and inputs.optimizer.lr_schedule != "constant":
        t = int(np.asarray(at.state.get("t", 0))) + 1  # this step's update
        opt = inputs.optimizer
        others = [learning_rate(opt, u) for u in (t - 1, t + 1) if u >= 1]
        if opt.lr_schedule == "step":
            others += [float(ref) * opt.lr_gamma, float(ref) / opt.lr_gamma]
        if any(_close(ours, np.float64(v), dtype) for v in others):
            return "schedule counting"
    return None


KINKED = ("relu", "leaky_relu")
LEAKY = 0.01  # scratch.activations.LEAKY_RELU_SLOPE, the slope this project takes at Z = 0


# The tensors a trace tensor is computed from, by its family (an activation from its layer's
# pre-activation, or batch norm's output; dropout's output from the activation).
OPERANDS = {"A": ("Z", "N"), "D": ("A",)}
# Activations whose formulas work at the scale of 1 whatever the value (1 + e^-Z, 1 - A²):
# their outputs' operands' scale is 1 (or the output's own, if larger), not Z's.
UNIT_SCALE = ("sigmoid", "tanh")


def _operands_scale(inputs, c, theirs: dict) -> float:
    """The scale of the numbers the tensor's formula works with: the tensor's own largest
    magnitude and its operands' (``OPERANDS``); for a sigmoid's or tanh's output, 1."""
    family, layer = c.tensor.rstrip("0123456789"), layer_of(c.tensor)
    values = [theirs[c.tensor]]
    unit = layer is not None and family in OPERANDS
    unit = unit and inputs.mlp.activation_of(layer) in UNIT_SCALE
    if layer is not None and not unit:
        values += [
            theirs[f"{f}{layer}"] for f in OPERANDS.get(family, ()) if f"{f}{layer}" in theirs
        ]
    scale = max(float(np.max(np.abs(np.asarray(v, np.float64)), initial=0.0)) for v in values)
    return max(scale, 1.0) if unit else scale


def _precision(c, ours: np.ndarray, ref: np.ndarray, scale: float) -> dict | None:
    """Where every difference is within SCALE_ULPS ulps of the operands' scale and one is
    MANY_ULPS ulps of its own value or more: the engine's formula cancels."""
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(ours))) or ref.size == 0:
        return None
    dtype = ref.dtype if ref.dtype.kind == "f" else np.dtype(np.float64)
    if not np.isfinite(scale) or scale == 0:
        return None
    ulp_scale = float(np.spacing(dtype.type(scale)))
    if c.max_abs > SCALE_ULPS * ulp_scale:
        return None
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64))
    ulps = diff / np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    at = np.unravel_index(int(np.argmax(ulps)), ref.shape) if ref.ndim else ()
    of_value, value = float(ulps[at]), float(ref[at])
    if of_value < MANY_ULPS:
        return None
    of_scale = c.max_abs / ulp_scale
    index = "[" + ", ".join(map(str, at)) + "]"
    within = "under an ulp" if of_scale < 1 else f"within {of_scale:.2g} ulp"
    note = (
        f"a loss of precision in the engine's formula, not a wrong equation: every "
        f"difference in {c.tensor} is {within} of its operands' scale ({scale:.3g}; |diff| "
        f"up to {c.max_abs:.3g}), but {c.tensor}{index} is {of_value:.2g} ulps of its own "
        f"value ({value:.3g}): the formula cancels (1 - x with x near 1; ½(1 + tanh(z/2)) "
        "for a sigmoid near 0) where the references keep a small value's digits; rewrite "
        "it so that it does not subtract nearly equal numbers"
    )
    return {"ulps_of_scale": of_scale, "ulps_of_value": of_value, "note": note}
