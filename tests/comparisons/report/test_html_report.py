"""report.html: one self-contained page, verdict first, every plot an embedded PNG.

The reports come from the real jobs on a 12-row synthetic problem. With scratch alone there is
no reference, so nothing is compared: the page must still render, without the comparison plots.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from html.parser import HTMLParser

import pytest

if "reports" in os.environ.get("BACKPROP_ORACLE_REQUIRE", "").split(","):
    import matplotlib  # noqa: F401  (required here: a missing one fails, not skips)
else:
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install '.[reports]')")

from comparisons.modes.drift import run_drift
from comparisons.modes.gradcheck import run_gradcheck
from comparisons.modes.lockstep import run_lockstep
from comparisons.report.atomic_folder import json_safe
from comparisons.report.html import render_html
from comparisons.report.text import first_divergence_lines, verdict_line
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec

pytestmark = pytest.mark.figures

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}
EXTERNAL = ("http://", "https://", "//")
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The page's tags in order, its text before the first <h2>, and nesting errors."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.errors: list[str] = []
        self.before_h2: list[str] = []
        self.seen_h2 = False
        self.styles: list[str] = []
        self.doctype = ""
        self.feed(text)
        self.close()

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.seen_h2 |= tag == "h2"
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
        else:
            self.open.pop()

    def handle_data(self, data):
        if self.open and self.open[-1] == "style":
            self.styles.append(data)
        if not self.seen_h2:
            self.before_h2.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


def spec(**changes) -> RunSpec:
    fields = {"dataset": "synthetic", "synthetic_rows": 12, "epochs": 1, "batch_size": 5}
    return RunSpec(**{**fields, "engines": ("scratch",), **changes})


@pytest.fixture(scope="module")
def scratch_problem():
    return build_inputs(spec())


@pytest.fixture(scope="module")
def reports(scratch_problem) -> dict[str, dict]:
    """One report per job, scratch only."""
    return {
        "lockstep": run_lockstep(scratch_problem),
        "drift": run_drift(scratch_problem),
        "gradcheck": run_gradcheck(scratch_problem, n_steps=2),
    }


def assert_self_contained(page: Page) -> None:
    assert page.doctype.lower() == "doctype html"
    assert page.errors == [] and page.open == []
    assert not page.all("script") and not page.all("link") and not page.all("iframe")
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            value = (value or "").strip().lower()
            if name in URL_ATTRS:
                assert not value.startswith(EXTERNAL), f"<{tag} {name}={value[:60]!r}>"
            assert not name.startswith("on"), f"<{tag} {name}=…>: no script on the page"
            if name == "style":
                assert "url(" not in value, f"<{tag} style={value[:60]!r}>"
    css = "".join(page.styles).lower()
    assert "url(" not in css and "@import" not in css


def embedded_pngs(page: Page) -> list[bytes]:
    """Every <img> decoded: each must be a data: PNG with alt text."""
    out = []
    for attrs in page.all("img"):
        src = attrs.get("src") or ""
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert (attrs.get("alt") or "").strip()
        try:
            data = base64.b64decode(src.split(",", 1)[1], validate=True)
        except binascii.Error as error:
            pytest.fail(f"an <img> is not valid base64: {error}")
        assert data.startswith(PNG)
        out.append(data)
    return out


def plot_ids(page: Page) -> list[str]:
    return [a["id"] for a in page.all("figure") if (a.get("id") or "").startswith("plot-")]


def assert_verdict_first(page: Page, report: dict) -> None:
    top = "".join(page.before_h2)
    assert verdict_line(report) in top
    for line in first_divergence_lines(report):
        assert line.strip() in top
    verdicts = [a for a in page.all("section") if "verdict" in (a.get("class") or "")]
    assert verdicts and report["verdict"] in verdicts[0]["class"].split()


PLOTS = {
    "lockstep": ["plot-loss", "plot-accuracy"],  # no reference: no error plots, no heatmap
    "drift": ["plot-loss", "plot-accuracy"],
    "gradcheck": ["plot-gradcheck"],
}


@pytest.mark.parametrize("mode", list(PLOTS))
def test_each_mode_renders_one_self_contained_page(reports, mode):
    report = reports[mode]
    page = Page(render_html(report))
    assert_self_contained(page)
    assert_verdict_first(page, report)
    assert len(embedded_pngs(page)) == len(PLOTS[mode])
    assert plot_ids(page) == PLOTS[mode]
    assert len(page.all("figcaption")) == len(PLOTS[mode])


def test_a_run_without_references_says_nothing_was_compared(reports):
    text = render_html(reports["lockstep"])
    assert reports["lockstep"]["per_tensor"] == {}
    assert "No reference engine in this run" in text


def test_report_text_is_escaped(reports):
    report = json.loads(json.dumps(json_safe(reports["lockstep"])))
    report["dataset"]["name"] = '<script>alert("x")</script>'
    report["environment"]["cpu"] = "<img src=https://example.com/x.png>"
    text = render_html(report)
    page = Page(text)
    assert not page.all("script")
    assert_self_contained(page)
    assert "&lt;script&gt;" in text


def test_a_report_read_back_from_json_with_non_finite_values_renders(reports):
    """report.json holds NaN and infinities as strings; the page and its plots take them."""
    report = json.loads(json.dumps(json_safe(reports["drift"])))
    report["per_step"][1]["loss"]["scratch"] = "NaN"
    report["metrics"]["scratch"]["test"]["accuracy"] = "NaN"
    report["metrics"]["scratch"]["train"]["loss"] = "Infinity"
    page = Page(render_html(report))
    assert_self_contained(page)
    assert len(embedded_pngs(page)) == len(PLOTS["drift"])


def test_comparison_plots_take_zeros_and_non_finite_errors(reports):
    """A made-up reference in the scratch-only report, as report.json would hold it: exact
    zeros (clipped on the log axes) and "NaN"/"Infinity" errors (marked) still draw."""
    report = json.loads(json.dumps(json_safe(reports["lockstep"])))
    report["engines"].append("other")
    for step in report["per_step"]:
        step["loss"]["other"] = step["loss"]["scratch"]
        step["worst_rel"]["other"] = {"forward": 1e-16, "loss": 0.0, "gradient": 2e-15}
    report["per_step"][1]["worst_rel"]["other"]["gradient"] = "NaN"

    def worst(kind, layer, max_rel, ok=True):
        return {"kind": kind, "layer": layer, "max_abs": 0.0, "max_rel": max_rel,
                "ratio": 0.5 if ok else "Infinity", "worst_step": 1, "ok": ok}  # fmt: skip

    report["per_tensor"] = {
        "other": {
            "Z1": worst("forward", 1, 1e-16),
            "loss": worst("loss", None, 0.0),
            "dW1": worst("gradient", 1, "Infinity", ok=False),
        }
    }
    page = Page(render_html(report))
    assert_self_contained(page)
    assert plot_ids(page) == ["plot-loss", "plot-worst_rel", "plot-heatmap", "plot-accuracy"]
    assert len(embedded_pngs(page)) == 4
    assert [a for a in page.all("tr") if a.get("class") == "fail"]


def with_a_reference(report: dict) -> dict:
    """The scratch-only lockstep report with a made-up reference that agrees exactly."""
    report = json.loads(json.dumps(json_safe(report)))
    report["engines"].append("other")
    for step in report["per_step"]:
        step["loss"]["other"] = step["loss"]["scratch"]
        step["worst_rel"]["other"] = {"forward": 1e-16, "loss": 1e-16, "gradient": 2e-15}
    return report


def test_a_caption_mentions_a_dashed_line_only_where_the_plot_draws_one(reports, monkeypatch):
    """Each figure's caption is held to what its figure shows: a caption that speaks of a
    dashed line (a tolerance, a reference's curve) needs one in the figure, and a figure with
    one needs its caption to say what it is."""
    from comparisons.report import plot_style, plots

    drawn = []
    monkeypatch.setattr(plot_style, "png", lambda fig: drawn.append(fig) or b"")
    for report in (with_a_reference(reports["lockstep"]), reports["gradcheck"]):
        for key, _, draw, _, caption in plots.PLOTS:
            drawn.clear()
            if draw(report) is None:
                continue
            styles = {line.get_linestyle() for ax in drawn[0].axes for line in ax.get_lines()}
            assert ("dashed" in caption) == ("--" in styles), (key, caption, styles)


def test_gradcheck_with_a_non_finite_error_still_plots(reports):
    report = json.loads(json.dumps(json_safe(reports["gradcheck"])))
    report["per_step"][0]["max_rel"]["dW1"] = "Infinity"
    report["per_step"][1]["max_rel"]["dZ1"] = 0.0
    page = Page(render_html(report))
    assert plot_ids(page) == PLOTS["gradcheck"]
    assert 'class="num fail"' in render_html(report)


@pytest.mark.torch
def test_a_broken_scratch_gets_a_red_page_that_names_the_first_divergence():
    from comparisons.faults.catalogue import FAULTS

    fault = FAULTS[0]
    problem = build_inputs(spec(engines=("scratch", "torch"), **fault.spec))
    with fault.patch():
        report = run_lockstep(problem)
    assert report["verdict"] == "disagree"
    assert report["first_divergence"]["tensor"] == fault.expected_tensor
    text = render_html(report)
    page = Page(text)
    assert_self_contained(page)
    assert_verdict_first(page, report)
    assert plot_ids(page) == ["plot-loss", "plot-worst_rel", "plot-heatmap", "plot-accuracy"]
    assert len(embedded_pngs(page)) == 4
    failing = [a for a in page.all("tr") if "fail" in (a.get("class") or "").split()]
    assert failing, "the tensors beyond tolerance are highlighted"
    assert f"first divergence: epoch 0, step 0 (batch 0): {fault.expected_tensor}" in text


def test_every_plot_is_small(reports):
    """A PNG of ~700×350 pixels at 100 dpi: the page stays a few hundred KB."""
    page = Page(render_html(reports["lockstep"]))
    for png in embedded_pngs(page):
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width <= 800 and height <= 800 and len(png) < 300_000


def test_without_matplotlib_the_page_renders_without_plots(reports, monkeypatch):
    """matplotlib is an optional extra: its absence must not cost the run its report."""
    import sys

    monkeypatch.delitem(sys.modules, "comparisons.report.plots", raising=False)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    text = render_html(reports["lockstep"])
    page = Page(text)
    assert_self_contained(page)
    assert not page.all("img") and "matplotlib is not installed" in text
