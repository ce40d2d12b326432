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
from comparisons.oracle.gradcheck import FD, fd_allowed, judged_part, judged_rows
from comparisons.oracle.recognise import recognise
from comparisons.oracle.roundoff import RoundoffStep, allowances
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH_NAME
from scratch.gradcheck import numerical_gradients


def arbitrate(
    inputs: RunInputs, divergence: Divergence, at: DivergentStep, under_test: str = SCRATCH_NAME
) -> dict:
    """A verdict on who is wrong at the first divergence, with the evidence behind it.

    ``under_test``: the engine under test's name, the key of its trace in ``at.traces``.
    Returns {"wrong": under_test | "<reference>" | "data/dropout.py" | "data/schedule.py" |
    "undecided", "explanation": str, "tensor": str, "agreements": {"a vs b": bool}}, and
    "look_at" where the code to look at is not the engine's that the divergence names. Blame
    needs evidence: judges that agree with each other and not with the blamed side (two
    references, finite differences, the documented dropout and batch draws); otherwise
    "undecided".
    """
    found = _arbitrate(inputs, divergence, at, under_test)
    if found["wrong"] in (under_test, "undecided"):  # what the engine's difference matches
        seen = recognise(inputs, divergence, at, under_test)
        found.update({k: v for k, v in seen.items() if k != "note"})
        found["explanation"] += f"; {seen['note']}" if seen.get("note") else ""
    return found


def _arbitrate(inputs: RunInputs, divergence: Divergence, at: DivergentStep, under_test: str):
    ours = under_test
    tensor = divergence.comparison.tensor
    kind = divergence.comparison.kind
    if kind in ("batch", "input"):
        return _batching(inputs, divergence, ours)
    if kind == "dropout_mask":  # every reference applies the mask data/dropout.py gave it
        return _dropout_mask(inputs, divergence, at, ours)
    problem = divergence.comparison.problem
    if divergence.comparison.engine == ours or problem:  # in place, kept, shape, missing
        return _verdict(ours, f"{ours} is wrong: {problem}", tensor, {})
    values = {e: t[tensor] for e, t in at.traces.items() if tensor in t}
    loss = float(at.traces[ours].get("loss", np.nan))
    allowed = _judges_allowance(inputs, at, tensor, ours)
    part = None  # the part of the tensor finite differences judge (gradcheck's rows)
    if kind in ("error_term", "gradient") and inputs.spec.dtype == "float64":
        masks = inputs.step_keywords(inputs.schedule.steps[divergence.step]).get("masks")
        part = judged_part(inputs.mlp, tensor, judged_rows(inputs.mlp, at.params, at.X, masks))
        numeric = numerical_gradients(inputs.mlp, at.params, at.X, at.Y, masks=masks)
        if tensor in numeric and part is not None:  # not dN, dxhat: they perturb Z and θ only
            values[FD] = numeric[tensor]
    agree = {}
    for a, b in itertools.combinations(values, 2):
        # No NaN or inf agrees with anything (compare's rule), so a NaN against an inf never
        # makes a majority: such a divergence is arbitrated by the finite values alone.
        fd = FD in (a, b)
        same_shape = np.shape(values[a]) == np.shape(values[b])
        if fd and same_shape:  # finite differences judge gradcheck's rows only
            c = compare(
                tensor,
                np.asarray(values[a])[part],
                np.asarray(values[b])[part],
                b,
                fd_allowed(np.asarray(values[FD])[part], loss),
            )
        else:
            c = compare(tensor, values[a], values[b], b, allowed)
        agree[f"{a} vs {b}"] = same_shape and c.ok
    references = [e for e in values if e not in (ours, FD)]
    return _decide(tensor, agree, ours, references, FD in values)


def documented_rows(inputs: RunInputs, step: int) -> np.ndarray | None:
    """Step ``step``'s rows drawn afresh from the algorithm ``data/schedule.py`` documents
    (one default_rng(seed); per epoch a permutation of the rows, or their order without
    shuffling; batches of batch_size in turn, the last kept unless drop_last): the judge
    between the engine under test's batching and the schedule's. None past the schedule's
    end."""
    schedule = inputs.schedule
    rng = np.random.default_rng(schedule.seed)
    k = 0
    for _ in range(schedule.epochs):
        order = rng.permutation(schedule.n_rows) if schedule.shuffle else np.arange(schedule.n_rows)
        for start in range(0, schedule.n_rows, schedule.batch_size):
            rows = order[start : start + schedule.batch_size]
            if schedule.drop_last and len(rows) < schedule.batch_size:
                continue
            if k == step:
                return rows
            k += 1
    return None


def _batching(inputs: RunInputs, divergence: Divergence, ours: str) -> dict:
    """The engine under test's batch (``ours``: its name; only scratch's batching is
    checked) against the schedule's rows (data/schedule.py's), judged by the documented
    algorithm: the schedule's rows right means its batching is wrong."""
    tensor = divergence.comparison.tensor
    judge = documented_rows(inputs, divergence.step)
    given = inputs.schedule.steps[divergence.step].rows
    agree = {
        "data/schedule.py vs the documented draw": judge is not None
        and bool(np.array_equal(judge, given))
    }
    if agree["data/schedule.py vs the documented draw"]:
        return _verdict(
            ours,
            f"{ours} is wrong: its batching does not read the schedule's rows ({tensor})",
            tensor,
            agree,
        )
    return _verdict(
        "data/schedule.py",
        f"data/schedule.py is wrong: step {divergence.step}'s rows are not the ones its "
        "documented algorithm draws (every reference was given them too)",
        tensor,
        agree,
    ) | {"look_at": "data/schedule.py:make_schedule"}


def documented_masks(
    seed: int, step: int, batch: int, widths: tuple[int, ...], rate: float, dtype: str
) -> dict[str, np.ndarray]:
    """A step's dropout masks drawn afresh from the algorithm ``data/dropout.py`` documents
    (PCG64 seeded by SeedSequence([seed, step, 1]); per hidden layer in order, B × n_l
    uniform draws; dropped below the rate): the judge between scratch's masks and the masks
    every reference is given, written here so that a fault in either leaves it alone."""
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, step, 1])))
    return {
        f"M{l}": (generator.random((batch, width)) >= rate).astype(dtype)
        for l, width in enumerate(widths, start=1)
    }


def _dropout_mask(inputs: RunInputs, divergence: Divergence, at: DivergentStep, name: str) -> dict:
    """The engine under test's mask (``name``: its name) against the one every reference was
    given (data/dropout.py's), judged by the documented algorithm: whichever side it matches
    is right; neither, undecided."""
    tensor = divergence.comparison.tensor
    mlp, spec = inputs.mlp, inputs.spec
    judge = documented_masks(
        spec.seed, divergence.step, len(at.X), mlp.sizes[1:-1], mlp.dropout, spec.dtype
    ).get(tensor)
    ours = at.traces.get(name, {}).get(tensor)
    given = next((t[tensor] for e, t in at.traces.items() if e != name and tensor in t), None)

    def same(a, b) -> bool:
        return (
            a is not None
            and b is not None
            and np.shape(a) == np.shape(b)
            and bool(np.array_equal(a, b))
        )

    agree = {f"{name} vs the documented draw": same(ours, judge)}
    agree["data/dropout.py vs the documented draw"] = same(given, judge)
    if agree["data/dropout.py vs the documented draw"] and not same(ours, judge):
        return _verdict(
            name,
            f"{name} is wrong: its dropout mask {tensor} is not the one the step's seed gives "
            "(data/dropout.py's, which the documented algorithm draws again)",
            tensor,
            agree,
        )
    if agree[f"{name} vs the documented draw"]:
        return _verdict(
            "data/dropout.py",
            f"data/dropout.py is wrong: the mask {tensor} it gave every reference is not the "
            f"one its documented algorithm draws for the step's seed, and {name}'s is",
            tensor,
            agree,
        ) | {"look_at": "data/dropout.py:keep_masks"}
    return _verdict(
        "undecided",
        f"the dropout mask {tensor} differs between {name} and data/dropout.py (given to every "
        "reference), and neither is the one the documented algorithm draws for the step's seed",
        tensor,
        agree,
    )


def _judges_allowance(inputs: RunInputs, at: DivergentStep, tensor: str, ours: str):
    """The allowance between engines, from a reference's operands where one finished its
    step: the engine under test's (``ours``) own values may be the broken ones (NaN, or far
    off), and a broken engine must not set the bar its judges are held to."""
    step = RoundoffStep(inputs.mlp, inputs.optimizer, at.params, at.state, at.X, at.Y)
    for engine, trace in at.traces.items():
        if engine != ours and trace:
            with np.errstate(all="ignore"):
                return allowances(step, trace, inputs.spec.dtype).get(tensor)
    return at.allowed.get(tensor)


def _agrees(agree: dict, a: str, b: str) -> bool:
    return agree.get(f"{a} vs {b}", agree.get(f"{b} vs {a}", False))


def _decide(tensor: str, agree: dict, ours: str, references: list[str], has_fd: bool) -> dict:
    """Who is wrong from who agrees with whom; ``ours``: the engine under test's name."""
    engines = [ours, *references]
    if has_fd and all(_agrees(agree, FD, e) for e in engines):
        has_fd = False  # the difference is below what finite differences can resolve
    aside = ""
    if has_fd and len(references) >= 2 and not any(_agrees(agree, FD, e) for e in engines):
        # agreeing with no engine, finite differences resolve nothing here: across a kink
        # (ReLU at Z = 0) they average the slopes of both sides, which no engine computes
        has_fd = False
        aside = " (finite differences agree with no engine: a kink within their step?)"
    judges = [*references, FD] if has_fd else list(references)
    with_ours = [j for j in judges if _agrees(agree, ours, j)]
    judges_agree = all(_agrees(agree, a, b) for a, b in itertools.combinations(judges, 2))
    if not with_ours and judges_agree and len(judges) >= 2:
        return _verdict(
            ours,
            f"{ours} is wrong: {_join(judges)} agree with each other{aside}",
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
