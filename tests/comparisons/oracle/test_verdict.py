"""One place decides a verdict (``oracle/verdict.py``), for every mode: the rule itself, and
that no other module writes a verdict of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from comparisons.oracle.verdict import VERDICTS, decide, worst

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "failure, disagreement, diverged, expected",
    [
        (None, False, None, "agree"),
        (None, False, "step 3", "diverged"),
        (None, True, None, "disagree"),
        (None, True, "step 3", "disagree"),  # a disagreement found outranks a later divergence
        ("raised", False, None, "error"),
        ("raised", True, "step 3", "error"),
    ],
)
def test_decide(failure, disagreement, diverged, expected):
    assert decide(failure=failure, disagreement=disagreement, diverged=diverged) == expected


def test_worst_is_the_most_severe_and_agree_when_there_is_nothing():
    assert worst([]) == "agree"
    assert worst(["agree", "diverged"]) == "diverged"
    assert worst(["diverged", "disagree", "agree"]) == "disagree"
    assert worst(["disagree", "error"]) == "error"
    assert VERDICTS[0] == "agree" and VERDICTS[-1] == "error"


def test_no_module_but_verdict_py_writes_a_verdict_of_its_own():
    written = re.compile(
        r"""\[["']verdict["']\]\s*=\s*["']|["']verdict["']:\s*["'](agree|dis|div|err)"""
    )
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted((ROOT / "comparisons").rglob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if written.search(line)
    ]
    assert not found, f"a verdict decided outside comparisons/oracle/verdict.py: {found}"
