"""The verdicts, decided here and nowhere else, for every mode (run, check, drift,
gradcheck, a recorded set's replay); ``report/`` renders what it is given.

    agree      every comparison within its allowance, every value finite
    disagree   a comparison beyond its allowance (the engines differ: a bug, somewhere)
    diverged   every engine turned non-finite together: training diverged, and nothing after
               it was verified
    error      an engine raised (its exception is reported, never a crash of the oracle)

An error ends a run and outranks everything; a disagreement found outranks a divergence that
came after it (it says something about the engine; a diverged run only that the training did).
A report of many cases (``check``) has the worst of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable

VERDICTS = ("agree", "diverged", "disagree", "error")  # from the best to the worst
SEVERITY = {v: i for i, v in enumerate(VERDICTS)}


def decide(*, failure: object, disagreement: bool, diverged: object) -> str:
    """A run's verdict: ``failure``, an engine's exception (or None); ``disagreement``,
    whether any comparison failed; ``diverged``, where every engine went non-finite (or
    None)."""
    if failure is not None:
        return "error"
    if disagreement:
        return "disagree"
    return "diverged" if diverged is not None else "agree"


def worst(verdicts: Iterable[str]) -> str:
    """The worst of several verdicts (a report of many cases); agree where there are none."""
    return max(verdicts, key=SEVERITY.__getitem__, default="agree")
