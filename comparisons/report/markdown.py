"""The Markdown writer: a ``Document`` as GitHub-flavoured Markdown (report.md, faults.md, …).

Every piece of text is escaped on the way out: ``<``, ``>`` and ``&`` as HTML entities (a
string from the environment or a file name must not become markup), and ``|`` inside a
table cell as ``\\|`` (or the row would split). Code spans are fenced with enough backticks
for their content. Figures are the HTML page's; here they are left out.
"""

from __future__ import annotations

import html
import re

from comparisons.report.document import Block, Cell, Document, Facts, Figure, Paragraph, Table
from comparisons.report.sections import document


def render_markdown(report: dict) -> str:
    """report.md for a run's report dict."""
    return write(document(report))


def write(doc: Document) -> str:
    lines = [f"# {text(doc.title)}", ""]
    if doc.lead:
        lines += [text(doc.lead), ""]
    lines += [f"**{text(doc.verdict.line)}**", ""]
    if doc.verdict.details:
        lines += [_fence(doc.verdict.details), ""]
    for section in doc.sections:
        body = [line for block in section.blocks for line in _block(block)]
        if body:
            lines += [f"## {text(section.title)}", "", *body]
    return "\n".join(lines).rstrip("\n") + "\n"


def text(value: object) -> str:
    """Text that Markdown shows as written: HTML's special characters as entities."""
    return html.escape(str(value), quote=False)


def _code(value: str) -> str:
    """A code span, with a backtick run longer than any inside the text."""
    ticks = "`" * (1 + max((len(run) for run in re.findall("`+", value)), default=0))
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{ticks}{pad}{value}{pad}{ticks}"


def _fence(lines: tuple[str, ...]) -> str:
    """A fenced code block (nothing inside is interpreted, so nothing is escaped)."""
    body = "\n".join(lines)
    ticks = "`" * max(3, 1 + max((len(r) for r in re.findall("`+", body)), default=0))
    return f"{ticks}\n{body}\n{ticks}"


def _cell(c: Cell, in_table: bool = True) -> str:
    parts = c.lines or (c.text,)
    out = ", ".join(_code(p) if c.code else text(p) for p in parts)
    if c.fail:
        out = f"**{out}**"
    return out.replace("|", "\\|") if in_table else out


def _block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        return [f"*{text(block.text)}*" if block.note else text(block.text), ""]
    if isinstance(block, Facts):
        return [f"- {text(label)}: {_cell(c, in_table=False)}" for label, c in block.items] + [""]
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return []
    raise TypeError(f"no Markdown for {type(block).__name__}")


def _table(t: Table) -> list[str]:
    header = "| " + " | ".join(text(c.name).replace("|", "\\|") for c in t.columns) + " |"
    rule = "|" + "".join("---:|" if c.numeric else "---|" for c in t.columns)
    lines = [f"*{text(t.caption)}*", ""] if t.caption else []
    lines += [header, rule]
    lines += ["| " + " | ".join(_cell(c) for c in r.cells) + " |" for r in t.rows]
    return [*lines, ""]
