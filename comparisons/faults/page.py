"""docs/faults.md: the catalogue as a table, generated from ``catalogue.py`` (and the faults
of ``options.py``) by ``python -m comparisons faults --list``; a test holds the page current.

The page lists what each fault is; whether the oracle catches it is what ``python -m
comparisons faults`` measures (``faults.md`` in its report folder).
"""

from __future__ import annotations

from collections import Counter

from comparisons.faults.catalogue import FAST_SPEC, FAULTS
from comparisons.report import markdown
from comparisons.report.document import Document, Paragraph, Section, Verdict, cell, row, table

COMMAND = "python -m comparisons faults --list"


def _spec(changes: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in changes.items()) or "—"


def document() -> Document:
    faults = [f for f in FAULTS if not f.equivalent]
    equivalent = [f for f in FAULTS if f.equivalent]
    categories = Counter(f.category for f in faults)
    line = (
        f"{len(faults)} faults in {len(categories)} categories "
        f"({', '.join(f'{n} {c}' for c, n in categories.items())}), and {len(equivalent)} "
        f"equivalent change{'s' * (len(equivalent) != 1)}"
    )
    lead = (
        f"Generated from comparisons/faults/catalogue.py: the output of `{COMMAND}`, saved as "
        "docs/faults.md; do not edit it by hand (a test fails when it is stale). Each fault is "
        "a real backprop bug applied to scratch in memory (files on disk are never touched); "
        "`python -m comparisons faults` runs each one through the oracle and reports whether "
        "it was caught, at which step and tensor, and whom the arbitration blamed."
    )
    problem = Paragraph(
        "Every fault runs on the fast oracle's problem ("
        + _spec(FAST_SPEC)
        + ") with the run-spec changes of its row. “first tensor” is the first tensor, in "
        "dataflow order, that the bug changes: where the oracle's first divergence must point "
        "for the fault to count as localized."
    )
    columns = ["fault", "category", "the bug", "first tensor", "breaks", "run-spec changes"]
    rows = [
        row(
            f.name,
            f.category,
            f.description,
            cell(f.expected_tensor, code=True),
            cell(f.where, code=True),
            _spec(f.spec),
        )
        for f in faults
    ]
    sections = [Section("faults", "The faults", (problem, table(columns, rows)))]
    if equivalent:
        note = Paragraph(
            "A change that cannot alter any result, kept to prove the oracle raises no false "
            "alarm: a test runs it and holds every tensor of every step bitwise the same."
        )
        rows = [row(f.name, f.description, cell(f.where, code=True)) for f in equivalent]
        section = Section(
            "equivalent", "Equivalent changes", (note, table(["change", "what", "where"], rows))
        )
        sections.append(section)
    return Document("The fault catalogue", Verdict(line, True), tuple(sections), lead)


def render() -> str:
    """The page, as ``faults --list`` prints it."""
    return markdown.write(document())
