"""Run the fault catalogue through the fast oracle: is each fault caught, where, how soon,
and does the arbitration blame scratch?"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from comparisons.faults.catalogue import FAULTS
from comparisons.faults.fault import Fault
from comparisons.oracle.arbitration import arbitrate
from comparisons.oracle.lockstep import lockstep
from comparisons.report import markdown
from comparisons.report.document import (
    Document,
    Facts,
    Paragraph,
    Section,
    Verdict,
    cell,
    row,
    table,
)
from comparisons.run.engines import make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec

SCHEMA_VERSION = 1


def run_fault(fault: Fault, engines: tuple[str, ...]) -> dict:
    """The fault's spec in lockstep, first sound (it must agree), then with the fault."""
    spec = RunSpec().replace(**fault.run_spec(), engines=engines)
    inputs = build_inputs(spec)
    refs = {e: make_engine(e, inputs.mlp, inputs.optimizer, spec.dtype) for e in engines}
    started = time.perf_counter()
    # Faults such as a softmax without its max shift overflow on purpose: the oracle judges
    # the values that come out (inf, NaN), so NumPy's warnings about them are noise here.
    with np.errstate(all="ignore"):
        sound = lockstep(inputs, refs, stop_at_first=True)
        with fault.patch():
            broken = lockstep(inputs, refs, stop_at_first=True)
    entry = {
        "name": fault.name,
        "category": fault.category,
        "description": fault.description,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in fault.spec.items()},
        "equivalent": fault.equivalent,
        "expected_tensor": fault.expected_tensor or None,
        "sound_run_agrees": sound.agree,
        "verdict": broken.verdict,
        "caught": not broken.agree,
        "steps_run": broken.steps_run,
        "seconds": time.perf_counter() - started,
    }
    d = broken.first_divergence
    if d is None:  # agreed, or went non-finite everywhere, or raised before any divergence
        entry.update(first_divergence=None, steps_to_catch=None, arbitration=None)
        entry["localized"] = None if broken.agree else False
        entry["steps_to_catch"] = None if broken.agree else broken.steps_run
        return entry
    entry["first_divergence"] = d.as_dict()
    entry["steps_to_catch"] = d.step + 1
    entry["localized"] = d.comparison.tensor == fault.expected_tensor
    entry["arbitration"] = arbitrate(inputs, d, broken.divergent_step)
    return entry


def run_catalogue(
    engines: tuple[str, ...] = ("torch", "jax"),
    faults: tuple[Fault, ...] | None = None,
    on_fault: Callable[[int], None] | None = None,
) -> dict:
    started = time.perf_counter()
    results = []
    for i, fault in enumerate(FAULTS if faults is None else faults):
        results.append(run_fault(fault, engines))
        if on_fault is not None:
            on_fault(i)
    real = [r for r in results if not r["equivalent"]]
    caught = [r for r in real if r["caught"]]
    localized = [r for r in caught if r["localized"]]
    blamed = [r for r in caught if r["arbitration"] and r["arbitration"]["wrong"] == "scratch"]
    summary = {
        "faults": len(real),
        "equivalent": len(results) - len(real),
        "caught": len(caught),
        "localized": len(localized),
        "localized_fraction": len(localized) / len(real) if real else 1.0,
        "scratch_blamed": len(blamed),
        "equivalent_agree": all(
            r["sound_run_agrees"] and not r["caught"] for r in results if r["equivalent"]
        ),
        "all_caught": len(caught) == len(real) and all(r["sound_run_agrees"] for r in results),
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": "faults",
        "engines": ["scratch", *engines],
        "summary": summary,
        "faults": results,
        "timings": {"total_s": time.perf_counter() - started},
    }


LOCALIZED = {True: "yes", False: "no", None: "—"}


def document(report: dict) -> Document:
    """The catalogue's report: the summary as its verdict, a table of faults, descriptions."""
    s = report["summary"]
    line = (
        f"{s['caught']} of {s['faults']} faults caught, {s['localized']} localized to the "
        f"tensor they touch ({100 * s['localized_fraction']:.0f}%), scratch blamed by the "
        f"arbitration in {s['scratch_blamed']}; {s['equivalent']} equivalent fault(s) "
        f"{'agree' if s['equivalent_agree'] else 'DO NOT agree'} as they must."
    )
    intro = Paragraph(
        f"Engines: {', '.join(report['engines'])}. Each fault runs the fast oracle's problem "
        "(12 synthetic rows, batches of 5, two epochs) plus its own spec changes, sound first "
        "(it must agree), then with the fault applied in memory."
    )
    rows = []
    for r in report["faults"]:
        d = r["first_divergence"]
        where = f"step {d['step']}" if d else ("— (equivalent)" if r["equivalent"] else "MISSED")
        missed = not d and not r["equivalent"]
        rows.append(
            row(
                r["name"],
                r["category"],
                cell(where, fail=missed),
                cell(f"{d['tensor']} vs {d['engine']}" if d else "—", code=bool(d)),
                cell(r["expected_tensor"] or "—", code=bool(r["expected_tensor"])),
                cell(
                    {True: "yes", False: "no", None: "—"}[r["localized"]],
                    fail=r["localized"] is False,
                ),
                cell(r["steps_to_catch"] or "—", True),
                r["arbitration"]["explanation"] if r["arbitration"] else "—",
                fail=missed or r["localized"] is False,
            )
        )
    columns = ["fault", "category", "caught at", "first divergence", "expected", "localized"]
    columns += [("steps", True), "who is wrong"]
    descriptions = Facts(tuple((r["name"], cell(r["description"])) for r in report["faults"]))
    sections = (
        Section("faults", "Faults", (intro, table(columns, rows))),
        Section("descriptions", "Descriptions", (descriptions,)),
    )
    verdict = Verdict(line, s["all_caught"])
    return Document("The fault catalogue through the oracle", verdict, sections)


def render_markdown(report: dict) -> str:
    return markdown.write(document(report))
