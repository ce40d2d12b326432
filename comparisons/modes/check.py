"""Check mode: what to run after changing scratch. Every case of the covering set in lockstep
(``run/coverage.py``), finite differences on each float64 case, and a short drift run of
scratch's own training loop; one line per case, and for the first failure where to look.

Against a recorded set (``run/recorded.py``) the references are replayed from files, so no
framework is needed; the drift run, which needs references that train freely, is left out
(the report says so)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from comparisons.modes.drift import run_drift
from comparisons.modes.gradcheck import run_gradcheck
from comparisons.oracle.arbitration import arbitrate
from comparisons.oracle.compare import kind_or_unknown
from comparisons.oracle.evaluation import add_evaluation, arbitrate_evaluation, judge_evaluation
from comparisons.oracle.lockstep import lockstep
from comparisons.oracle.tolerances import table_as_dict
from comparisons.oracle.verdict import worst
from comparisons.report.content import SCHEMA_VERSION
from comparisons.report.environment import fingerprint
from comparisons.run import coverage
from comparisons.run.coverage import DRIFT_CASES, GRADCHECK_STEPS, Case
from comparisons.run.engines import make_references
from comparisons.run.inputs import RunInputs, build_inputs
from comparisons.run.recorded import RECORD_COMMAND, Recorded, RecordedError, ReplayEngine
from comparisons.run.under_test import SCRATCH, UnderTest
from scratch.trace_schema import names_of


def run_check(
    references: tuple[str, ...],
    on_case: Callable[[int], None] | None = None,
    cases: tuple[Case, ...] | None = None,
    under_test: UnderTest = SCRATCH,
    recorded: Recorded | None = None,
    until_first_failure: bool = False,
) -> dict:
    """Every case; the report's verdict is the worst case's. With ``recorded``, against the
    recorded traces of ``references``. ``until_first_failure``: stop after the first case
    that does not agree (its verdict and first divergence are the report's either way)."""
    started = time.perf_counter()
    if recorded is not None:
        recorded.check_references(references)
    results = []
    for i, case in enumerate(coverage.cases() if cases is None else cases):
        results.append(run_case(case, references, under_test, recorded))
        if on_case is not None:
            on_case(i)
        if until_first_failure and results[-1]["verdict"] != "agree":
            break
    if recorded is None and not (until_first_failure and results[-1]["verdict"] != "agree"):
        for case in DRIFT_CASES:
            results.append(_drift_case(case, references, under_test))
            if until_first_failure and results[-1]["verdict"] != "agree":
                break
    report = {
        "schema_version": SCHEMA_VERSION,
        "mode": "check",
        "engines": [under_test.name, *references],
        "cases": results,
        "verdict": worst(r["verdict"] for r in results),
        "tolerances": table_as_dict(),
        "environment": fingerprint(list(() if recorded else references)),
        "timings": {"total_s": time.perf_counter() - started},
        "under_test": under_test.describe(),
        "recorded": recorded.describe() if recorded is not None else None,
        # the optional tensors the engine left out in any case, in order of first appearance
        "not_provided": list(dict.fromkeys(n for r in results for n in r.get("not_provided", []))),
        # the kinds of tensor compared in any case, in dataflow order of first appearance
        "compared": list(dict.fromkeys(k for r in results for k in r.get("compared", []))),
    }
    failed = next((r for r in results if r["verdict"] != "agree"), None)
    report["failed_case"] = failed["name"] if failed else None
    for key in ("first_divergence", "arbitration", "error", "diverged"):
        report[key] = failed.get(key) if failed else None
    return report


def compared_kinds(result) -> list[str]:
    """The kinds of tensor (forward, gradient, optimizer_state, …) a lockstep run compared
    against at least one reference, in dataflow order."""
    names = dict.fromkeys(n for table in result.per_tensor.values() for n in table.names)
    return list(dict.fromkeys(kind_or_unknown(n) for n in names))


def run_case(
    case: Case,
    references: tuple[str, ...],
    under_test: UnderTest = SCRATCH,
    recorded: Recorded | None = None,
) -> dict:
    """One case in lockstep (stopping at its first divergence), then finite differences."""
    inputs = build_inputs(case.spec(references))
    refs, reload = _references(case, inputs, recorded)
    result = lockstep(inputs, refs, stop_at_first=True, under_test=under_test, reload=reload)
    evaluation = None
    if result.agree:  # the final evaluation, every reference from the engine's final state
        final = result.final_params, result.final_state
        if recorded is not None:  # the recorded final state, as the references had it
            final = next(iter(refs.values())).case.state("evaluation")
        evaluation = judge_evaluation(inputs, under_test, *final, refs)
        add_evaluation(result, evaluation, inputs)
    entry = {
        "name": case.name,
        "spec": {k: list(v) if isinstance(v, tuple) else v for k, v in case.changes.items()},
        "dtype": inputs.spec.dtype,
        "verdict": result.verdict,
        "steps_run": result.steps_run,
        "steps": len(inputs.schedule),
        "first_divergence": result.first_divergence.as_dict() if result.first_divergence else None,
        "diverged": result.diverged.as_dict() if result.diverged else None,
        "error": result.failure.as_dict() if result.failure else None,
        "arbitration": None,
        "gradcheck": None,
        "not_provided": result.not_provided,
        "compared": compared_kinds(result),
    }
    if result.first_divergence is not None and result.divergent_step is not None:
        entry["arbitration"] = arbitrate(
            inputs, result.first_divergence, result.divergent_step, under_test.name
        )
        if recorded is not None:
            _consistent(recorded, case, result.first_divergence, entry["arbitration"])
    elif result.first_divergence is not None and evaluation is not None:
        entry["arbitration"] = arbitrate_evaluation(inputs, evaluation, under_test.name)
    if result.agree and inputs.spec.dtype == "float64":
        fd = run_gradcheck(inputs, GRADCHECK_STEPS, under_test=under_test)
        entry["gradcheck"] = fd["verdict"]
        if fd["verdict"] != "agree":
            entry["verdict"] = worst([entry["verdict"], fd["verdict"]])
            entry["first_divergence"] = fd["first_divergence"]
            entry["diverged"] = fd.get("diverged")
            entry["error"] = fd.get("error")
    return entry


def _consistent(recorded: Recorded, case: Case, divergence, arbitration: dict) -> None:
    """A recorded set's references agree with each other, as they do live, within the
    allowances a live run gives them: where two disagree, the set was changed after it was
    recorded, and it is refused instead of used to blame one of them."""
    references = set(recorded.references)
    for pair, agree in arbitration["agreements"].items():
        a, _, b = pair.partition(" vs ")
        if not agree and {a, b} <= references:
            raise RecordedError(
                f"--recorded {recorded.folder}: case {case.name!r}: the recorded {a} and {b} "
                f"traces disagree with each other on {divergence.comparison.tensor} at step "
                f"{divergence.step} beyond their allowances, as live references never do: "
                "the set was changed after it was recorded (its sha256 digests catch "
                "corruption, not an edit that updates them); record it again: "
                f"{RECORD_COMMAND.format(folder=recorded.folder)}"
            )


def _references(case: Case, inputs: RunInputs, recorded: Recorded | None):
    """The case's references, live or replayed; and, replayed, the recorded state each step
    starts from (the engine under test is loaded with it, as the references were)."""
    if recorded is None:
        return make_references(inputs), None
    spec = json.loads(json.dumps(inputs.spec.to_dict()))
    names = names_of(inputs.mlp, inputs.optimizer)
    taken = recorded.case(case.name, spec, inputs.schedule.sha256, names)
    references = inputs.spec.engines
    return {name: ReplayEngine(taken, name) for name in references}, taken.state


def _drift_case(case: Case, references: tuple[str, ...], under_test: UnderTest) -> dict:
    inputs = build_inputs(case.spec(references))
    report = run_drift(inputs, under_test=under_test)
    return {
        "name": case.name,
        "spec": dict(case.changes),
        "dtype": inputs.spec.dtype,
        "verdict": report["verdict"],
        "steps_run": len(report["per_step"]),
        "steps": len(inputs.schedule),
        "first_divergence": report["first_divergence"],
        "diverged": report.get("diverged"),
        "error": report.get("error"),
        "arbitration": report.get("arbitration"),
        "gradcheck": None,
        "mode": "drift",
    }
