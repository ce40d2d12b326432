"""The command line's options, one builder per set of commands that share them (the
commands and their help: cli.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from comparisons.oracle.workers import usable_cpus
from comparisons.run.engines import DEVICES
from comparisons.run.recorded import BUNDLED
from comparisons.run.spec import ENGINES
from comparisons.run.under_test import ENTRY_POINTS

REPORTS = Path("reports")  # each command that writes has its own folder: reports/run, …
JOBS_VARIABLE = "BACKPROP_ORACLE_JOBS"  # run --jobs's default, where set


class UsageError(Exception):
    """A command line argparse cannot parse: reported in one line, exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own prints the usage too: two lines or more
        raise UsageError(f"{message}; see {self.prog} --help")


def spec_options(parser: argparse.ArgumentParser, quiet: bool = True) -> None:
    """--config, --set, --dtype; and --quiet, unless the command prints nothing but its
    answer (``quiet=False``)."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of run-spec keys (configs/*.toml); without it, the Occupancy model",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one run-spec key, e.g. --set lr=0.1 --set hidden=[16,8] (repeatable)",
    )
    parser.add_argument(
        "--dtype", choices=("float64", "float32"), help="shorthand for --set dtype=…"
    )
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="print only the verdict lines")


def oracle_options(parser: argparse.ArgumentParser) -> None:
    spec_options(parser)
    parser.add_argument(
        "--engines",
        metavar="LIST",
        help="comma-separated references to verify the engine under test against (default: "
        f"{','.join(ENGINES)}); the engine under test, scratch or --engine's, is in the run by "
        "itself (scratch in the list is accepted and ignored)",
    )
    engine_option(parser)


def device_options(parser: argparse.ArgumentParser) -> None:
    """run's and drift's options: the oracle's, and where the references run."""
    oracle_options(parser)
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where the references run (default: cpu); gpu: PyTorch on CUDA and JAX on its GPU "
        "backend, float32 matmuls pinned to full float32; scratch stays on the CPU",
    )


def run_options(parser: argparse.ArgumentParser) -> None:
    """run's options: drift's, and how many processes the run may use."""
    device_options(parser)
    parser.add_argument(
        "--jobs",
        type=jobs,
        default=os.environ.get(JOBS_VARIABLE, "auto"),
        help="processes the run may use: 1 runs every engine in this one; N > 1 runs up to "
        "N - 1 references in processes of their own, overlapping scratch's steps and the "
        "comparisons (the verdict and report are the same); auto, the default, is the CPUs "
        f"this process may use (default from ${JOBS_VARIABLE}, else auto)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="run the lockstep rule as its plain loop (comparisons/oracle/plain.py), one step "
        "at a time in this one process, instead of its fast executor: slower, the same "
        "verdict and report; for reading along, or for doubting the fast path",
    )


def jobs(value: str) -> int:
    if value == "auto":
        return usable_cpus()
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(
            f"give a whole number of 1 or more, or auto; got {value!r}"
        )
    return jobs


def engine_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        metavar="MODULE:FACTORY",
        help="the engine under test (default: scratch): any implementation of the engine "
        "contract (comparisons/run/contract.py), as module:factory (imported from the current "
        f"folder or installed) or a name registered in the entry-point group {ENTRY_POINTS}; "
        "outputs name it by its entry point's name or its module's last part "
        "(examples.layered_mlp:make_engine is layered_mlp)",
    )


def out_option(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=REPORTS / command,
        help="the report folder: a missing or empty folder, or one this tool wrote; replaced "
        f"as a whole when the command ends (default: {REPORTS / command})",
    )


def check_options(parser: argparse.ArgumentParser) -> None:
    references_options(
        parser,
        "the references to check the engine under test against (default: torch,jax; torch "
        "alone is faster)",
        "print only the verdict lines",
    )
    engine_option(parser)
    parser.add_argument(
        "--recorded",
        metavar="DIR",
        type=Path,
        nargs="?",
        const=BUNDLED,
        help="check against the references' traces recorded in DIR by the record command "
        "instead of running them: no framework needed (without DIR: the set that comes with "
        "the package, comparisons/recorded)",
    )


def record_options(parser: argparse.ArgumentParser) -> None:
    references_options(
        parser,
        "the references to record (default: torch,jax)",
        "print only the summary line",
    )


def references_options(parser: argparse.ArgumentParser, engines: str, quiet: str) -> None:
    """``--engines`` (references only) and ``--quiet``, as check and faults take them."""
    parser.add_argument("--engines", default="torch,jax", metavar="LIST", help=engines)
    parser.add_argument("--quiet", action="store_true", help=quiet)


def faults_options(parser: argparse.ArgumentParser) -> None:
    references_options(
        parser,
        "the references to run each fault against (default: torch,jax)",
        "print only the summary",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print the catalogue as a Markdown page (docs/faults.md) and run nothing",
    )
