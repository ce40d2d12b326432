"""The HTML writer: a ``Document`` as one self-contained HTML5 page (report.html).

Inline CSS, every plot a ``data:`` PNG, no script and nothing that a browser would fetch, so
the page opens the same offline, from a CI artifact or mail. Every piece of text is escaped.
"""

from __future__ import annotations

import base64
import html

from comparisons.report.document import (
    Block,
    Cell,
    Document,
    Facts,
    Figure,
    Paragraph,
    Row,
    Section,
    Table,
)
from comparisons.report.sections import document

CSS = """
:root { --ok: #2b8a3e; --ok-bg: #ebfbee; --bad: #c92a2a; --bad-bg: #fff5f5; --line: #dee2e6;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
* { box-sizing: border-box; }
body { margin: 0; color: #212529; background: #fff; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 68rem; margin: 0 auto; padding: 1.5rem 1.25rem 4rem; }
h1 { font-size: 1.6rem; margin: 0 0 1rem; }
h2 { font-size: 1.25rem; margin: 2.25rem 0 .75rem; padding-bottom: .25rem;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
p, li { max-width: 52rem; }
code, pre, .num { font-family: var(--mono); font-size: .85rem; }
.verdict { border: 2px solid; border-left-width: .6rem; border-radius: .4rem;
  padding: .75rem 1rem; margin: 0 0 1rem; }
.verdict.agree { border-color: var(--ok); background: var(--ok-bg); }
.verdict.disagree { border-color: var(--bad); background: var(--bad-bg); }
.verdict .line { font-size: 1.15rem; font-weight: 700; margin: 0; }
.verdict.agree .line { color: var(--ok); }
.verdict.disagree .line { color: var(--bad); }
.verdict pre { margin: .6rem 0 0; white-space: pre-wrap; overflow-wrap: anywhere; }
nav { font-size: .9rem; color: #495057; }
nav a { color: #1864ab; margin-right: .9rem; white-space: nowrap; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .9rem; }
caption { caption-side: top; text-align: left; color: #495057; padding: 0 0 .35rem; }
th, td { padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top;
  text-align: left; }
thead th { background: #e9ecef; border-bottom: 2px solid #adb5bd; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f8f9fa; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th.num { font-family: inherit; font-size: inherit; }
td.code { min-width: 15rem; }
tr.fail, tr.fail:nth-child(even) { background: #ffe3e3; }
td.fail { background: #ffc9c9; font-weight: 700; color: var(--bad); }
tr.group td { border-top: 2px solid #adb5bd; }
figure { margin: 1rem 0 2rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: .9rem; color: #495057; margin-top: .4rem; max-width: 52rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.facts dt { font-weight: 600; color: #495057; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.note { color: #495057; font-size: .9rem; }
"""


def render_html(report: dict) -> str:
    """report.html for a run's report dict, plots included."""
    return write(document(report, with_figures=True))


def write(doc: Document) -> str:
    """The whole document as one self-contained HTML5 page."""
    nav = " ".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in doc.sections)
    lead = f'<p class="lead">{_e(doc.lead)}</p>\n' if doc.lead else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(doc.title)} — {'agree' if doc.verdict.agree else 'disagree'}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{_e(doc.title)}</h1>\n{lead}{_verdict(doc)}\n<nav>{nav}</nav>\n"
        + "\n".join(_section(s) for s in doc.sections)
        + "\n</main>\n</body>\n</html>\n"
    )


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _verdict(doc: Document) -> str:
    verdict = doc.verdict
    detail = f"<pre>{_e(chr(10).join(verdict.details))}</pre>" if verdict.details else ""
    return (
        f'<section class="verdict {"agree" if verdict.agree else "disagree"}" role="status">'
        f'<p class="line">{_e(verdict.line)}</p>{detail}</section>'
    )


def _section(section: Section) -> str:
    body = "".join(_block(b) for b in section.blocks)
    return f'<section id="{_e(section.anchor)}"><h2>{_e(section.title)}</h2>{body}</section>'


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f'<p class="note">{_e(block.text)}</p>' if block.note else f"<p>{_e(block.text)}</p>"
    if isinstance(block, Facts):
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_content(c)}</dd>" for k, c in block.items)
        return f'<dl class="facts">{items}</dl>'
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block)
    raise TypeError(f"no HTML for {type(block).__name__}")


def _content(c: Cell) -> str:
    parts = [f"<code>{_e(p)}</code>" if c.code else _e(p) for p in (c.lines or (c.text,))]
    return "<br>".join(parts)


def _td(c: Cell) -> str:
    classes = " ".join(
        k for k, on in (("num", c.numeric), ("code", c.code), ("fail", c.fail)) if on
    )
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{_content(c)}</td>"


def _tr(r: Row) -> str:
    classes = " ".join(k for k, on in (("group", r.group), ("fail", r.fail)) if on)
    attr = f' class="{classes}"' if classes else ""
    return f"<tr{attr}>{''.join(_td(c) for c in r.cells)}</tr>"


def _table(t: Table) -> str:
    head = "".join(
        f'<th class="num">{_e(c.name)}</th>' if c.numeric else f"<th>{_e(c.name)}</th>"
        for c in t.columns
    )
    cap = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
    return (
        f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(_tr(r) for r in t.rows)}</tbody></table></div>"
    )


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _figure(figure: Figure) -> str:
    width, height = _png_size(figure.png)
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f'<figure id="plot-{_e(figure.key)}"><h3>{_e(figure.title)}</h3>'
        f'<img src="data:image/png;base64,{data}" alt="{_e(figure.alt)}" '
        f'width="{width}" height="{height}">'
        f"<figcaption>{_e(figure.caption)}</figcaption></figure>"
    )
