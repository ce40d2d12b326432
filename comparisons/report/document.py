"""The report as a document: sections of paragraphs, facts, tables and figures, with no markup.

A report's content is built once, here (``sections.py`` builds it from ``report.json``'s
content), and written twice: as Markdown (``markdown.py``) and as HTML (``html.py``). A
writer decides how a failing row or a number looks; the document only says that it fails
or that it is a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    """One table cell. ``lines``: several values stacked in the cell (one per line)."""

    text: str = ""
    numeric: bool = False
    fail: bool = False
    code: bool = False
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    fail: bool = False  # the row is beyond its tolerance
    group: bool = False  # the row starts a new group (a new engine, a new stage)


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    caption: str = ""


@dataclass(frozen=True)
class Paragraph:
    text: str
    note: bool = False  # an aside (greyed in HTML)


@dataclass(frozen=True)
class Facts:
    """Labelled values: ``(label, cell)`` pairs."""

    items: tuple[tuple[str, Cell], ...]


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    alt: str
    caption: str
    png: bytes


Block = Paragraph | Facts | Table | Figure


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Verdict:
    """The first thing a reader sees: the verdict line and the lines that say where."""

    line: str
    agree: bool
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    title: str
    verdict: Verdict
    sections: tuple[Section, ...] = field(default_factory=tuple)
    lead: str = ""  # one sentence under the title: what was compared, and how


def cell(value: object, numeric: bool = False, **kwargs) -> Cell:
    return Cell(str(value), numeric=numeric, **kwargs)


def table(columns: list[str | tuple[str, bool]], rows: list[Row], caption: str = "") -> Table:
    """A table from column names (``(name, True)`` for a numeric column) and rows."""
    cols = tuple(Column(c[0], c[1]) if isinstance(c, tuple) else Column(c) for c in columns)
    return Table(cols, tuple(rows), caption)


def row(*cells: Cell | str, fail: bool = False, group: bool = False) -> Row:
    """A row; plain strings become plain cells."""
    return Row(tuple(c if isinstance(c, Cell) else Cell(c) for c in cells), fail, group)
