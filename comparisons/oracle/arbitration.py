"""Who is wrong? At the first divergent step, the engine under test, each reference and (for
gradients and error terms, in float64) central finite differences are compared with each other.

Finite differences are a third judge that shares no code with the references: they
differentiate the task's loss numerically from the state the engine under test started the
step from, so they tell whether its backprop is consistent with the forward pass — and, when
the references agree with them, that its gradients are right and its forward pass or loss is
what differs.
"""

from __future__ import annotations

import itertools

import numpy as np

from comparisons.oracle.compare import compare
from comparisons.oracle.divergence import Divergence, DivergentStep
from comparisons.oracle.gradcheck import FD, fd_allowed
from comparisons.oracle.roundoff import Step, allowances
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH_NAME
from scratch.gradcheck import numerical_gradients


def arbitrate(
    inputs: RunInputs, divergence: Divergence, at: DivergentStep, under_test: str = SCRATCH_NAME
) -> dict:
    """A verdict on who is wrong at the first divergence, with the evidence behind it.

    ``under_test``: the engine under test's name, the key of its trace in ``at.traces``.
    Returns {"wrong": under_test | "<reference>" | "undecided", "explanation": str,
    "tensor": str, "agreements": {"a vs b": bool}}.
    """
    ours = under_test
    tensor = divergence.comparison.tensor
    kind = divergence.comparison.kind
    if kind in ("batch", "input"):
        return _verdict(
            ours,
            f"{ours} is wrong: its batching does not read the schedule's rows ({tensor})",
            tensor,
            {},
        )
    if kind == "dropout_mask":  # every reference applies the mask it was given
        return _verdict(
            ours,
            f"{ours} is wrong: its dropout mask {tensor} is not the one the step's seed gives "
            "(data/dropout.py)",
            tensor,
            {},
        )
    problem = divergence.comparison.problem
    if divergence.comparison.engine == ours or problem:  # in place, kept, shape, missing
        return _verdict(ours, f"{ours} is wrong: {problem}", tensor, {})
    values = {e: t[tensor] for e, t in at.traces.items() if tensor in t}
    loss = float(at.traces[ours].get("loss", np.nan))
    allowed = _judges_allowance(inputs, at, tensor, ours)
    if kind in ("error_term", "gradient") and inputs.spec.dtype == "float64":
        masks = inputs.given(inputs.schedule.steps[divergence.step]).get("masks")
        numeric = numerical_gradients(inputs.mlp, at.params, at.X, at.Y, masks=masks)
        if tensor in numeric:  # not dN, dxhat: finite differences perturb Z and θ only
            values[FD] = numeric[tensor]
    agree = {}
    for a, b in itertools.combinations(values, 2):
        # No NaN or inf agrees with anything (compare's rule), so a NaN against an inf never
        # makes a majority: such a divergence is arbitrated by the finite values alone.
        fd = FD in (a, b)
        same_shape = np.shape(values[a]) == np.shape(values[b])
        c = compare(
            tensor,
            values[a],
            values[b],
            b,
            fd_allowed(values[FD], loss) if fd else allowed,
        )
        agree[f"{a} vs {b}"] = same_shape and c.ok
    references = [e for e in values if e not in (ours, FD)]
    return _decide(tensor, agree, ours, references, FD in values)


def _judges_allowance(inputs: RunInputs, at: DivergentStep, tensor: str, ours: str):
    """The allowance between engines, from a reference's operands where one finished its
    step: the engine under test's (``ours``) own values may be the broken ones (NaN, or far
    off), and a broken engine must not set the bar its judges are held to."""
    step = Step(inputs.mlp, inputs.optimizer, at.params, at.state, at.X, at.Y)
    for engine, trace in at.traces.items():
        if engine != ours and trace:
            with np.errstate(all="ignore"):
                return allowances(step, trace, inputs.spec.dtype).get(tensor)
    return at.allowed.get(tensor)


def _agrees(agree: dict, a: str, b: str) -> bool:
    return agree.get(f"{a} vs {b}", agree.get(f"{b} vs {a}", False))


def _decide(tensor: str, agree: dict, ours: str, references: list[str], has_fd: bool) -> dict:
    """Who is wrong from who agrees with whom; ``ours``: the engine under test's name."""
    if has_fd and all(_agrees(agree, FD, e) for e in [ours, *references]):
        has_fd = False  # the difference is below what finite differences can resolve
    judges = [*references, FD] if has_fd else list(references)
    with_ours = [j for j in judges if _agrees(agree, ours, j)]
    judges_agree = all(_agrees(agree, a, b) for a, b in itertools.combinations(judges, 2))
    if not with_ours and judges_agree and len(judges) >= 2:
        return _verdict(
            ours,
            f"{ours} is wrong: {_join(judges)} agree with each other",
            tensor,
            agree,
        )
    if has_fd and with_ours == [FD]:
        return _verdict(
            "undecided",
            f"{ours}'s backprop agrees with finite differences of the loss, but not with "
            "the references: they compute a different loss or forward pass (a convention? "
            "see docs/numerics.md)",
            tensor,
            agree,
        )
    odd = [r for r in references if r not in with_ours]
    if with_ours and odd:
        side = " and ".join([ours, *with_ours])
        return _verdict(
            odd[0] if len(odd) == 1 else "undecided",
            f"the references disagree with each other: {' and '.join(odd)} "
            f"{'is' if len(odd) == 1 else 'are'} wrong, {side} agree "
            f"(a convention or framework difference in {' and '.join(odd)})",
            tensor,
            agree,
        )
    if not with_ours and len(judges) == 1:
        return _verdict(
            "undecided",
            f"{ours} and {judges[0]} disagree; with one judge the oracle cannot tell which is "
            "wrong (run with both references)",
            tensor,
            agree,
        )
    return _verdict(
        "undecided",
        "no majority: "
        + "; ".join(f"{pair} {'agree' if ok else 'differ'}" for pair, ok in agree.items()),
        tensor,
        agree,
    )


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _verdict(wrong: str, explanation: str, tensor: str, agree: dict) -> dict:
    return {"wrong": wrong, "explanation": explanation, "tensor": tensor, "agreements": agree}
