"""The command line: ``python -m comparisons COMMAND`` (or the ``backprop-oracle`` script).

Exit status: 0 the engines agree (or, for ``train``, training finished), 1 they disagree or
an engine raised, 2 bad input (one line on stderr that says what, where and how to fix it;
nothing written), 3 training diverged, 4 a bug in the oracle itself, 130 SIGINT, 143
SIGTERM (the previous report intact), 141 stdout closed early. Each command that writes has
its own default folder, ``reports/COMMAND``; what ``--out`` may be: report/atomic_folder.py.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import traceback
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from comparisons import bench
from comparisons import cli_options as options
from comparisons.cli_options import Parser, UsageError
from comparisons.faults.catalogue import FAULTS
from comparisons.faults.page import render as catalogue_page
from comparisons.faults.runner import render_markdown as render_faults_markdown
from comparisons.faults.runner import run_catalogue
from comparisons.modes import liberror
from comparisons.modes.check import run_check
from comparisons.modes.drift import run_drift
from comparisons.modes.gradcheck import run_gradcheck
from comparisons.modes.lockstep import run_lockstep
from comparisons.modes.record import record
from comparisons.modes.train import train_scratch
from comparisons.oracle.workers import reference_workers
from comparisons.progress import Progress, end_line
from comparisons.report.atomic_folder import OutFolderError, prepare_out_folder, write_report_folder
from comparisons.report.csv_files import csv_renderers
from comparisons.report.html import render_html
from comparisons.report.markdown import render_markdown
from comparisons.report.text import accuracy_lines, headline_details, verdict_line
from comparisons.run import coverage
from comparisons.run.contract import ContractError
from comparisons.run.engines import REFERENCES
from comparisons.run.inputs import build_inputs
from comparisons.run.interrupts import (
    Terminated,
    signalled,
    signals_recorded,
    stop_if_signalled,
)
from comparisons.run.recorded import MANIFEST, load_recorded
from comparisons.run.spec import ENGINES, UNDER_TEST, SpecError, echoed, load_spec
from comparisons.run.under_test import load_under_test
from data import DataError
from scratch.config import ScratchInputError
from scratch.training import NonFiniteLossError

EXIT_AGREE, EXIT_DISAGREE, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_BROKEN_PIPE = 130, 143, 141
# Each verdict's exit status: an engine that raised (error) is a failure of the engine under
# test, like a disagreement; a bug in the oracle itself is EXIT_INTERNAL.
EXIT_STATUS = {
    "agree": EXIT_AGREE,
    "disagree": EXIT_DISAGREE,
    "error": EXIT_DISAGREE,
    "diverged": EXIT_DIVERGED,
}
GRADCHECK_STEPS = 3  # gradcheck's default --steps (or all the run has, when fewer)
BAD_INPUT = (
    SpecError,
    DataError,
    ScratchInputError,
    NonFiniteLossError,
    OutFolderError,
    ContractError,
)


def _load(args: argparse.Namespace, **overrides: object):
    return build_inputs(_spec(args, **overrides))


def _spec(args: argparse.Namespace, **overrides: object):
    assignments = list(args.assignments)
    if args.dtype:
        assignments.append(f"dtype={args.dtype}")
    if getattr(args, "engines", None) is not None:
        names = tuple(e.strip() for e in args.engines.split(",") if e.strip())
        if not names:
            raise SpecError(
                f"--engines: no engine in {echoed(args.engines)}; give a comma-separated list, "
                f"e.g. {','.join(ENGINES)}"
            )
        overrides.setdefault("engines", names)
    return load_spec(args.config, assignments, overrides)


def _progress(args: argparse.Namespace, inputs, label: str, total: int | None = None):
    return Progress(total or len(inputs.schedule), label, enabled=not args.quiet)


def _write_and_report(
    args: argparse.Namespace, report: dict, lines: list[str] | None = None
) -> int:
    renderers = {"report.md": render_markdown, "report.html": render_html}
    renderers.update(csv_renderers(report))
    out = write_report_folder(report, args.out, renderers)
    for line in headline(report) if lines is None else lines:
        print(line)
    if not args.quiet:
        for line in accuracy_lines(report):
            print(line)
        print("report: " + ", ".join(str(out / name) for name in ["report.json", *renderers]))
    return EXIT_STATUS[report["verdict"]]


def headline(report: dict) -> list[str]:
    """The first lines of the command's output (and of report.md): the verdict, where the
    engines first disagreed, who is wrong and where to look."""
    return [verdict_line(report), *headline_details(report)]


def cmd_run(args: argparse.Namespace) -> int:
    under_test = load_under_test(args.engine)
    spec = _spec(args)
    # the workers start importing their frameworks while this process loads the data
    # the plain loop (--plain) runs every engine in this process, one step at a time
    jobs = 1 if args.plain else args.jobs
    with reference_workers(spec.engines, jobs) as workers:
        if workers:  # the report's plotting stack, imported while the run waits on them
            threading.Thread(target=_import_plots, daemon=True).start()
        inputs = build_inputs(spec)
        progress = _progress(args, inputs, "lockstep")
        report = run_lockstep(
            inputs,
            on_step=progress,
            device=args.device,
            under_test=under_test,
            workers=workers,
            plain=args.plain,
        )
        for worker in workers.values():
            worker.stop()  # they end while the report is written
        return _write_and_report(args, report)


def _import_plots() -> None:
    try:
        importlib.import_module("comparisons.report.plots")
    except ImportError:  # no matplotlib (an optional extra): the report says so, later
        pass


def cmd_drift(args: argparse.Namespace) -> int:
    under_test = load_under_test(args.engine)
    inputs = _load(args)
    progress = _progress(args, inputs, "drift")
    report = run_drift(inputs, on_step=progress, device=args.device, under_test=under_test)
    return _write_and_report(args, report)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    under_test = load_under_test(args.engine)
    inputs = _load(args)
    if inputs.spec.dtype != "float64":
        raise SpecError("dtype: gradcheck needs float64 (finite differences in float32 are noise)")
    total = len(inputs.schedule)
    if args.steps is not None and not 1 <= args.steps <= total:
        raise SpecError(
            f"--steps: this run has {total} step{'s' * (total > 1)}, so --steps must be 1 to "
            f"{total}; got {args.steps} (more epochs or a smaller batch_size make more steps)"
        )
    steps = args.steps or min(GRADCHECK_STEPS, total)
    progress = _progress(args, inputs, "gradcheck", steps)
    report = run_gradcheck(inputs, steps, on_step=progress, under_test=under_test)
    return _write_and_report(args, report)


def cmd_check(args: argparse.Namespace) -> int:
    references = _references(args.engines, "--engines")
    under_test = load_under_test(args.engine)
    recorded = load_recorded(args.recorded) if args.recorded is not None else None
    progress = Progress(len(coverage.cases()), "check", enabled=not args.quiet)
    report = run_check(references, on_case=progress, under_test=under_test, recorded=recorded)
    cases = [f"  {c['verdict'].upper():<9} {c['name']} ({c['dtype']})" for c in report["cases"]]
    return _write_and_report(
        args, report, [verdict_line(report), *cases, *headline_details(report)]
    )


def cmd_record(args: argparse.Namespace) -> int:
    references = _references(args.engines, "--engines")
    progress = Progress(len(coverage.cases()), "record", enabled=not args.quiet)
    manifest, files = record(references, on_case=progress)
    renderers = {name: (lambda _, data=data: data) for name, data in files.items()}
    out = write_report_folder(manifest, args.out, renderers, json_name=MANIFEST)
    size = sum(len(data) for data in files.values())
    print(
        f"recorded {len(files)} cases of check's covering set against {', '.join(references)} "
        f"into {out} ({size / 1e6:.2f} MB)"
    )
    return EXIT_AGREE


def _references(text: str, option: str) -> tuple[str, ...]:
    """A comma-separated list of references, each known, at least one; scratch in it is
    dropped, as the run spec's ``engines`` drops it (the engine under test is in by itself)."""
    engines = tuple(e for e in (e.strip() for e in text.split(",")) if e and e != UNDER_TEST)
    unknown = sorted(set(engines) - set(REFERENCES))
    if unknown or not engines:
        raise SpecError(
            f"{option}: a comma-separated list of the references {', '.join(REFERENCES)}; got "
            f"{echoed(text)} (the engine under test, scratch or --engine's, is in every run by "
            "itself)"
        )
    return engines


def cmd_faults(args: argparse.Namespace) -> int:
    if args.list:
        print(catalogue_page(), end="")
        return EXIT_AGREE
    engines = _references(args.engines, "--engines")
    progress = Progress(len(FAULTS), "faults", enabled=not args.quiet)
    report = run_catalogue(engines, on_fault=lambda i: progress(i))
    out = write_report_folder(
        report, args.out, {"faults.md": render_faults_markdown}, json_name="faults.json"
    )
    s = report["summary"]
    print(
        f"{'ALL CAUGHT' if s['all_caught'] else 'MISSED SOME'}: {s['caught']} of {s['faults']} "
        f"faults caught, {s['localized']} localized ({100 * s['localized_fraction']:.0f}%), "
        f"{s['equivalent']} equivalent"
    )
    for r in report["faults"]:
        if not r["equivalent"] and not (r["caught"] and r["sound_run_agrees"]):
            print(f"  missed: {r['name']}: {r['description']}")
        elif r["localized"] is False:
            print(
                f"  not localized: {r['name']}: expected {r['expected_tensor']}, "
                f"first divergence {r['first_divergence']['tensor']}"
            )
    if not args.quiet:
        print(f"report: {out / 'faults.json'}, {out / 'faults.md'}")
    return EXIT_AGREE if s["all_caught"] else EXIT_DISAGREE


def cmd_train(args: argparse.Namespace) -> int:
    inputs = _load(args, engines=())  # so the memory estimate counts scratch alone
    spec, splits = inputs.spec, list(inputs.splits)
    if not args.quiet:
        print(
            f"training scratch on {spec.dataset}: sizes {inputs.mlp.sizes}, "
            f"{spec.activation} hidden, {spec.loss}, {spec.optimizer.name} lr={spec.optimizer.lr}, "
            f"batch {spec.batch_size}, {spec.epochs} epochs, {spec.dtype}"
        )
        print(f"{'epoch':>5}  {'mean loss':>10}  " + "  ".join(f"{s:>7}" for s in splits))
    # NumPy's floating-point warnings stay off stderr: a loss gone non-finite ends the run
    # with the error line that says so (NonFiniteLossError), an overflow that does not is moot
    with np.errstate(all="ignore"):
        for last in train_scratch(inputs):
            stop_if_signalled()  # an epoch's end: a signalled run stops here
            if not args.quiet:
                acc = "  ".join(f"{100 * last.accuracy[s]:6.2f}%" for s in splits)
                print(f"{last.epoch:>5}  {last.mean_loss:>10.6f}  {acc}")
    summary = ", ".join(f"{s} {100 * last.accuracy[s]:.2f}%" for s in splits)
    print(f"final accuracy: {summary}")
    return EXIT_AGREE


def cmd_contract(args: argparse.Namespace) -> int:
    import json

    from comparisons.modes.contract import engine_contract, render

    spec = _spec(args, engines=())
    contract = engine_contract(build_inputs(spec, shapes_only=True))  # no data needed
    print(json.dumps(contract, indent=1) if args.json else "\n".join(render(contract)))
    return EXIT_AGREE


def contract_options(parser: argparse.ArgumentParser) -> None:
    options.spec_options(parser, quiet=False)
    parser.add_argument("--json", action="store_true", help="print it as JSON")


COMMANDS: dict[str, tuple[Callable, Callable, str, str]] = {
    "run": (
        cmd_run,
        options.run_options,
        "the lockstep oracle: every engine, every step, every tensor; writes the report",
        "Step scratch, PyTorch and JAX through the same mini-batches. Before each step every "
        "reference is loaded with scratch's parameters and optimizer state; after it every "
        "tensor of the trace is compared in dataflow order. Writes report.json, report.md and "
        "report.html into --out. Exit 0 when all agree, 1 when not, 2 on bad input. --engine "
        "verifies another implementation of the engine contract instead of scratch; every "
        "output then names it by its own name.",
    ),
    "drift": (
        cmd_drift,
        options.device_options,
        "free-running trajectories from the same start; how far they drift apart",
        "Train every engine freely from the same initial weights through the same batches and "
        "record, per step, each reference's loss and parameter drift from scratch. The verdict "
        "compares the final losses on every split (tolerance in comparisons/oracle/tolerances.py).",
    ),
    "gradcheck": (
        cmd_gradcheck,
        options.oracle_options,
        "scratch's backprop against central finite differences (float64, no framework)",
        "Check every error term and gradient of scratch against central finite differences "
        "at the first --steps steps of the run, in float64. Needs no framework.",
    ),
    "check": (
        cmd_check,
        options.check_options,
        "after changing scratch: every pair of option values in short lockstep runs",
        "Run the covering set of short lockstep runs that together hold every pair of option "
        "values the run spec allows (activations, loss, optimizer, L2, decay, clipping, "
        "schedule, dropout, batch norm, dtype, batching; comparisons/run/coverage.py), "
        "finite differences on each float64 case, and a short drift run of scratch's own "
        "training loop. Prints one line per case, then for the "
        "first failure where it diverged, who is wrong and where in scratch to look. Writes "
        "report.json, report.md and report.html into --out. --engine checks another "
        "implementation of the engine contract instead of scratch; --recorded replays the "
        "references from recorded traces, with no framework installed.",
    ),
    "record": (
        cmd_record,
        options.record_options,
        "record the references' traces of check's covering set, for check --recorded",
        "Step sound scratch through every case of check's covering set; before each step load "
        "every reference with scratch's state and record the state and each reference's trace "
        "(compressed .npz, no pickle, with a manifest of specs, schedules, environment and a "
        "digest per array: sha256, its first 96 bits). check --recorded DIR then verifies an "
        "engine against them with neither PyTorch nor JAX installed. Writes into --out (the "
        "set that comes with the package: comparisons/recorded).",
    ),
    "faults": (
        cmd_faults,
        options.faults_options,
        "run the catalogue of deliberate scratch faults through the oracle",
        "Apply each fault of the catalogue (comparisons/faults/catalogue.py) to scratch in "
        "memory and run the fast oracle: was it caught, by which tensor at which step, was the "
        "first divergence the tensor the fault touches, and whom does the arbitration blame. "
        "Writes faults.json and faults.md into --out. Exit 0 only when every fault is caught.",
    ),
    "bench": (
        bench.run,
        bench.add_arguments,
        "time each engine's training step, the bare-matmul bound and the oracle's cost",
        "Time scratch, PyTorch (eager and torch.compile) and JAX per training step at the "
        "default and at wide and deep sizes, float64 and float32; compare with bare NumPy "
        "matrix products; measure a lockstep run against the engines' own time. Writes "
        "bench.json, bench.md and bench.svg into --out (default reports/bench).",
    ),
    "contract": (
        cmd_contract,
        contract_options,
        "print the engine contract of a run spec: every state, given and trace name",
        "For the run spec (--config, --set), print every name an engine under test is given "
        "and keeps (set_state and state(): parameters, optimizer state, the step count, "
        "running statistics), is given at each step (dropout masks) and returns in its trace, "
        "with its shape, whether it is required, and its equation as this configuration "
        "computes it. --json prints the same as JSON. Writes nothing.",
    ),
    "liberror": (
        liberror.command,
        liberror.add_options,
        "measure each framework's error for the functions the allowances use, against mpmath",
        "Evaluate exp, log, log1p, tanh, the logistic, softplus, BCE-with-logits' gradient, "
        "sqrt, 1/sqrt, cos and expm1 in NumPy (scratch's formulas), PyTorch and JAX, per dtype and "
        "per device at hand, on fixed points across each domain; compare with mpmath at 113 "
        "bits; write the worst error of each, in units of u, to the table the allowances take "
        "their library terms from (comparisons/oracle/library_error.json) and to "
        "docs/library-error.md. Needs mpmath (the liberror extra). --check re-measures a "
        "tenth of the points against the table instead.",
    ),
    "train": (
        cmd_train,
        options.spec_options,
        "train the scratch model alone; per-epoch loss and accuracy on each split",
        "Train the scratch NumPy model alone (no framework needed) and print, per epoch, the "
        "mean training loss and the accuracy on every split.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m comparisons",
        description="Backprop from scratch in NumPy, verified batch by batch against PyTorch "
        "and JAX. Exit status: 0 agree, 1 disagree or error, 2 bad input, 3 diverged, "
        "4 internal error, 130/143 interrupted (SIGINT/SIGTERM).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, add_options, summary, description) in COMMANDS.items():
        command = sub.add_parser(name, help=summary, description=description)
        add_options(command)
        if name in ("run", "drift", "gradcheck", "check", "faults", "record"):
            options.out_option(command, name)
        if name == "gradcheck":
            command.add_argument(
                "--steps",
                type=int,
                help=f"how many steps to check, from the first (default: {GRADCHECK_STEPS}, "
                "or all the run has when fewer)",
            )
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with signals_recorded():
        args = None
        try:
            stop_if_signalled()  # one that came during start-up
            args = build_parser().parse_args(argv)
            if getattr(args, "out", None) is not None:
                prepare_out_folder(args.out)  # before any work: a bad --out costs nothing
            code = args.handler(args)
            # What is still buffered goes out here, where a reader that left (`… | head`) is
            # a BrokenPipeError caught below, not an "Exception ignored" at interpreter exit.
            sys.stdout.flush()
            if signalled() is not None:  # it came after the report was written
                err = _signal_error()
                if getattr(args, "out", None) is not None:
                    err.report_written = args.out  # type: ignore[attr-defined]
                return _interrupted(err, getattr(args, "out", None))
            return code
        except (KeyboardInterrupt, Terminated) as err:
            return _interrupted(err, getattr(args, "out", None))
        except (*BAD_INPUT, UsageError) as err:
            if signalled() is not None:  # the signal came first: it is why the run ended
                return _interrupted(_signal_error(), getattr(args, "out", None))
            return _say(f"error: {err}", EXIT_BAD_INPUT)
        except BrokenPipeError:  # `… | head`: the reader left; the report is already written
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except Exception:  # a bug in the oracle, not in the engine under test: say so, loudly
            if signalled() is not None:  # a consequence of the signal (a worker it ended)
                return _interrupted(_signal_error(), getattr(args, "out", None))
            end_line()
            traceback.print_exc()
            print(
                "internal error: the oracle itself failed (not the engines it compares); please "
                "report the traceback above",
                file=sys.stderr,
            )
            return EXIT_INTERNAL


def _signal_error() -> BaseException:
    try:
        stop_if_signalled()
    except (KeyboardInterrupt, Terminated) as err:
        return err
    return KeyboardInterrupt()


def _interrupted(err: BaseException, out: Path | None) -> int:
    terminated = isinstance(err, Terminated)
    name, code = ("SIGTERM", EXIT_TERMINATED) if terminated else ("SIGINT", EXIT_INTERRUPTED)
    written = getattr(err, "report_written", None)
    if written is not None:
        return _say(f"interrupted ({name}) after the report was written to {written}", code)
    kept = f"; {out} is as it was" if out is not None else ""
    return _say(f"interrupted ({name}): no report was written{kept}", code)


def _say(message: str, code: int) -> int:
    """Print ``message`` on stderr as one line; return ``code``."""
    end_line()
    print(one_line(message), file=sys.stderr)
    return code


def one_line(text: str, limit: int = 1000) -> str:
    """A message as one printable line: its lines joined (a data error's "Fix:" line too),
    control characters escaped, and cut in the middle beyond ``limit`` characters."""
    text = "; ".join(part.strip() for part in text.replace("\nFix: ", "; fix: ").splitlines())
    text = "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cs") else c for c in text)
    if len(text) > limit:
        text = f"{text[: limit * 2 // 3]} … {text[-(limit // 3) :]}"
    return text
