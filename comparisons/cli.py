"""The command line: ``python -m comparisons SUBCOMMAND``.

Exit status: 0 success, 1 engines disagree (oracle commands), 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from comparisons.problem import build_problem
from comparisons.spec import SpecError, load_spec
from comparisons.train_job import train_scratch
from data import DataError
from scratch.network import ScratchInputError
from scratch.train import NonFiniteLossError

EXIT_OK, EXIT_DISAGREE, EXIT_BAD_INPUT = 0, 1, 2


def _add_spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of run-spec keys (see configs/); the defaults are the Occupancy model",
    )
    parser.add_argument(
        "--set",
        dest="assignments",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one run-spec key, e.g. --set lr=0.1 --set hidden=[16,8] (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")


def cmd_train(args: argparse.Namespace) -> int:
    spec = load_spec(args.config, args.assignments)
    problem = build_problem(spec)
    splits = list(problem.splits)
    if not args.quiet:
        print(
            f"training scratch on {spec.dataset}: sizes {problem.mlp.sizes}, "
            f"{spec.activation} hidden, {spec.loss}, {spec.optimizer} lr={spec.lr}, "
            f"batch {spec.batch_size}, {spec.epochs} epochs, {spec.dtype}"
        )
        print(f"{'epoch':>5}  {'mean loss':>10}  " + "  ".join(f"{s:>7}" for s in splits))
    last = None
    for last in train_scratch(problem):
        if not args.quiet:
            acc = "  ".join(f"{100 * last.accuracy[s]:6.2f}%" for s in splits)
            print(f"{last.epoch:>5}  {last.mean_loss:>10.6f}  {acc}")
    summary = ", ".join(f"{s} {100 * last.accuracy[s]:.2f}%" for s in splits)
    print(f"final accuracy: {summary}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comparisons",
        description="Backprop from scratch, verified against PyTorch and JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train the scratch model and print per-epoch loss and accuracy on each split",
        description="Train the scratch NumPy model alone (no framework needed) and print, per "
        "epoch, the mean training loss and the accuracy on every split.",
    )
    _add_spec_options(train)
    train.set_defaults(handler=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (SpecError, DataError, ScratchInputError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
