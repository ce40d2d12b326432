"""The oracle as a pytest plugin: per-batch verification of any backprop in a user's own tests.

Installed with the package (entry point ``pytest11``), so that any test may ask for the
``assert_lockstep`` fixture::

    def test_my_backprop(assert_lockstep):
        assert_lockstep("mypackage.mlp:make_engine")            # or the factory itself
        assert_lockstep(make_engine, {"optimizer": "adam", "hidden": [8, 8]}, engines=("torch",))

Each call steps the engine (``comparisons/run/contract.py``) and the references through a
short run in lockstep. Where they disagree the test fails with the first divergence, who is
wrong (arbitration) and where to look; the report (report.json, report.md, report.html) is
saved under the test's ``tmp_path`` and its path is
in the failure message. Heavy imports wait until the first call, so the plugin costs a
test session nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest


def assert_lockstep(
    engine: str | Callable,
    spec: Mapping | None = None,
    *,
    engines: tuple[str, ...] = ("torch", "jax"),
    report_dir: str | Path | None = None,
) -> dict:
    """Fail unless ``engine`` agrees with every reference at every step of a run.

    ``engine``: ``"module:factory"`` or the factory itself. ``spec``: run-spec keys (those of
    ``python -m comparisons run --set``) over ``check``'s base problem: 12 synthetic rows,
    hidden layers 4 and 4, two epochs of batches of 5 (``BASE`` in ``run/coverage.py``).
    ``report_dir``: where the report is written (the fixture gives a folder under
    ``tmp_path``). Returns the report.
    """
    from comparisons.modes.lockstep import run_lockstep
    from comparisons.run.coverage import BASE
    from comparisons.run.inputs import build_inputs
    from comparisons.run.spec import RunSpec, SpecError
    from comparisons.run.under_test import under_test_of

    under_test = under_test_of(engine)
    if "engines" in (spec or {}):
        raise SpecError("spec: give the references as engines=(…), not as a spec key")
    changes = {**BASE, **dict(spec or {})}
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    inputs = build_inputs(RunSpec().replace(**changes, engines=engines))
    report = run_lockstep(inputs, under_test=under_test)
    written = _write(report, Path(report_dir)) if report_dir is not None else None
    if report["verdict"] != "agree":
        from comparisons.report.text import headline_details, verdict_line

        lines = [verdict_line(report), *headline_details(report)]
        if written is not None:
            lines.append(f"report: {written}")
        pytest.fail("\n".join(lines), pytrace=False)
    return report


def _write(report: dict, folder: Path) -> Path:
    """The report in a new folder per call (``folder``, ``folder-1``, …); its HTML's path."""
    from comparisons.report.atomic_folder import write_report_folder
    from comparisons.report.html import render_html
    from comparisons.report.markdown import render_markdown

    out = next(
        p
        for i in itertools.count()
        if not (p := folder if i == 0 else folder.with_name(f"{folder.name}-{i}")).exists()
    )
    write_report_folder(report, out, {"report.md": render_markdown, "report.html": render_html})
    return out / "report.html"


@pytest.fixture(name="assert_lockstep")
def assert_lockstep_fixture(tmp_path: Path) -> Callable[..., dict]:
    """``assert_lockstep`` with its report saved under the test's ``tmp_path``."""

    def check(engine, spec=None, *, engines=("torch", "jax"), report_dir=None) -> dict:
        folder = report_dir if report_dir is not None else tmp_path / "lockstep-report"
        return assert_lockstep(engine, spec, engines=engines, report_dir=folder)

    return check
