"""``python -m comparisons bench``: its options, the plan they make, and the run that
measures, writes ``bench.json``, ``bench.md`` and ``bench.svg`` and prints the targets."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comparisons.bench.optional import installed, load
from comparisons.bench.oracle_cost import oracle_cost, oracle_spec, time_main_job
from comparisons.bench.page import check_page_path, command_of, page_data, write_page
from comparisons.bench.render import render_markdown, render_svg
from comparisons.bench.settings import (
    ACTIVATION,
    DEFAULT_OUT,
    DTYPES,
    ENGINES,
    LOSS,
    OPTIMIZER,
    ORACLE_BATCH,
    ORACLE_ROWS,
    ORACLE_STEPS,
    ORACLE_WIDTHS,
    PEAK_N,
    QUICK_ORACLE_STEPS,
    QUICK_ORACLE_WIDTHS,
    QUICK_SIZES,
    SIZES,
    Size,
)
from comparisons.bench.steps import peak, time_size
from comparisons.bench.targets import compare, judge, target_lines
from comparisons.bench.threads import fixed_threads
from comparisons.report.atomic_folder import prepare_out_folder, write_report_folder
from comparisons.report.environment import fingerprint
from comparisons.run.engines import DEVICES
from comparisons.run.files import FileError, read_json
from comparisons.run.inputs import (
    ACTIVATION_COPIES,
    COPIES_PER_ENGINE,
    available_memory,
    check_memory,
)
from comparisons.run.inputs import (
    _size as memory_text,
)
from comparisons.run.interrupts import stop_if_signalled
from comparisons.run.spec import SpecError

COMPARE_LIMIT = 16 << 20  # bytes of an earlier bench.json (a few kB)
# The modules each reference needs; the oracle's cost runs the references that have them.
FRAMEWORKS = {"torch": ("torch",), "jax": ("jax", "optax")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=DEFAULT_OUT,
        help="where bench.json, bench.md and bench.svg go: a missing or empty folder, or one "
        f"this tool wrote (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, fewer repeats, no torch.compile, short oracle runs (~30 s)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where the references' steps run (default: cpu); gpu: PyTorch on CUDA, JAX on "
        "its GPU backend; scratch and the bare matmuls stay on the CPU",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for every library's pool (default: 1; see comparisons/bench/threads.py)",
    )
    _step_options(parser)
    _oracle_options(parser)
    parser.add_argument(
        "--compare",
        metavar="BENCH_JSON",
        type=Path,
        help="an earlier run's bench.json: each target's figure is shown beside its own there",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the targets")
    parser.add_argument(
        "--page",
        metavar="FILE.md",
        type=Path,
        help="also write the tables as a documentation page (e.g. docs/benchmarks.md, with "
        "its figures in FILE.json beside it and the command that regenerates it)",
    )


def _step_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        metavar="LIST",
        help=f"comma-separated: {', '.join(SIZES)}, or widths and batch like 5-8-4-1:50",
    )
    parser.add_argument(
        "--engines", metavar="LIST", help=f"comma-separated, of {', '.join(ENGINES)}"
    )
    parser.add_argument(
        "--dtypes", metavar="LIST", default=",".join(DTYPES), help="float64, float32 or both"
    )
    parser.add_argument(
        "--repeats", type=int, help="timed steps per size, engine and dtype (default: per size)"
    )
    parser.add_argument(
        "--compile-all",
        action="store_true",
        help="time torch.compile at every size, not only at "
        + ", ".join(s.name for s in SIZES.values() if s.compile),
    )


def _oracle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--oracle-steps",
        metavar="LIST",
        help=f"lockstep run lengths, multiples of {ORACLE_ROWS // ORACLE_BATCH} "
        f"(default: {','.join(map(str, ORACLE_STEPS))}); 0 skips the oracle's cost",
    )
    parser.add_argument(
        "--oracle-widths",
        metavar="LIST",
        help="hidden widths for the oracle's cost, like 8-4,64-64, each at batches of "
        f"{ORACLE_BATCH} or of its own: 256-256@256 (default: "
        + ",".join(_width_text(w, b) for w, b in ORACLE_WIDTHS)
        + ")",
    )
    parser.add_argument(
        "--main-job",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time `python -m comparisons run` on Occupancy (default: when OCCUPANCY_DATA_DIR "
        "is set and not --quick)",
    )


def run(args: argparse.Namespace) -> int:
    """Measure, write ``bench.json``, ``bench.md`` and ``bench.svg``, print the targets."""
    plan = _plan(args)
    previous = _previous(args.compare) if args.compare else None
    prepare_out_folder(args.out)  # before measuring: a bad --out costs nothing
    if args.page is not None:
        check_page_path(args.page)
    busy = os.getloadavg()  # before this run adds its own

    def say(text: str) -> None:  # each stage of the measuring: a signalled run stops here
        stop_if_signalled()
        if not args.quiet:
            print(text, file=sys.stderr)

    report = measure(plan, args.threads, args.quick, say, args.device)
    report["targets"] = judge(report)
    if previous is not None:
        compare(report["targets"], previous)
        report["compared_with"] = {"path": str(args.compare), "created": previous.get("created")}
    renderers = {"bench.md": render_markdown}
    if load("matplotlib", missing_ok=True) is not None:  # the reports extra; without it, no plot
        renderers["bench.svg"] = render_svg
    report["plot"] = "bench.svg" if "bench.svg" in renderers else None
    out = write_report_folder(report, args.out, renderers, json_name="bench.json")
    if args.page is not None:
        write_page(args.page, page_data(report, command_of(args, args.page), busy))
    for line in target_lines(report):
        print(line)
    if not args.quiet:
        print("bench: " + ", ".join(str(out / name) for name in ["bench.json", *renderers]))
        if args.page is not None:
            print(f"page: {args.page}, {args.page.with_suffix('.json')}")
    return 0


def measure(plan: Plan, threads: int, quick: bool, say, device: str = "cpu") -> dict:
    """Every figure of the plan, with the thread pools fixed: the report, less its targets;
    the references' steps on ``device``."""
    with fixed_threads(threads, plan.engines) as thread_info:
        report = {
            "schema_version": 2,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": _machine(plan.engines),
            "threads": thread_info,
            "settings": {
                "activation": ACTIVATION,
                "loss": LOSS,
                "optimizer": vars(OPTIMIZER),
                "quick": quick,
                "device": device,
            },
            "peak": {},
            "steps": [],
            "oracle": [],
            "main_job": None,
        }
        if device == "gpu":  # asked once the threads are fixed: JAX's backends start here
            report["machine"]["gpu"] = _gpu_name()
            if report["machine"]["gpu"] is None:
                raise SpecError(
                    "--device gpu: neither PyTorch nor JAX sees a GPU here; leave --device out "
                    "to time the references on the CPU"
                )
        for dtype in plan.dtypes:
            say(f"the machine's peak: a {PEAK_N}×{PEAK_N} matmul, {dtype}")
            report["peak"][dtype] = peak(dtype)
        for size in plan.sizes:
            for dtype in plan.dtypes:
                say(f"step time: {size.name} ({size.label}), {dtype}")
                peak_gflops = report["peak"][dtype]["gflops"]
                report["steps"].append(time_size(size, dtype, plan.engines, peak_gflops, device))
        for hidden, steps, batch in plan.oracle:
            say(f"oracle cost: hidden {hidden}, batch {batch}, {steps} steps")
            report["oracle"].append(oracle_cost(hidden, steps, plan.references, device, batch))
        if plan.main_job:
            say("main job: python -m comparisons run")
            report["main_job"] = time_main_job(device)
    return report


def _machine(engines: list[str]) -> dict:
    """The machine and the versions that bench.md names, from the environment fingerprint
    every report carries; the frameworks are those the bench uses and has imported."""
    frameworks = [
        name
        for name in FRAMEWORKS
        if name in sys.modules and any(e.split(".")[0] == name for e in engines)
    ]
    env = fingerprint(frameworks)
    machine = {key: env[key] for key in ("cpu", "cpu_count", "os", "python", "numpy")}
    for name in frameworks:
        machine[name] = env[name]["version"]
    if env["jax"] and env["jax"]["optax"]:
        machine["optax"] = env["jax"]["optax"]
    return machine


def _gpu_name() -> str | None:
    """The GPU the references would run on, as PyTorch or JAX names it; None if neither
    sees one."""
    if installed("torch") and load("torch").cuda.is_available():
        return load("torch").cuda.get_device_name()
    if installed("jax", "optax"):
        gpus = [d for d in load("jax").devices() if d.platform == "gpu"]
        if gpus:
            return gpus[0].device_kind
    return None


# --- what to run -------------------------------------------------------------------------


@dataclass
class Plan:
    """What a bench run measures (from the command line; see ``add_arguments``)."""

    sizes: list[Size]  # with the run's repeats and torch.compile choice
    dtypes: list[str]
    engines: list[str]
    references: list[str]  # the engines of the oracle's cost: torch and jax, when asked for
    oracle: list[tuple[tuple[int, ...], int, int]]  # (hidden widths, steps, batch) of each run
    main_job: bool


def _plan(args: argparse.Namespace) -> Plan:
    """The run's sizes, dtypes, engines and oracle configurations; SpecError on bad input."""
    sizes = (
        [_size(text.strip()) for text in args.sizes.split(",") if text.strip()]
        if args.sizes
        else [SIZES[n] for n in (QUICK_SIZES if args.quick else SIZES)]
    )
    dtypes = _names("--dtypes", args.dtypes, DTYPES)
    default_engines = [e for e in ENGINES if not (args.quick and e == "torch.compile")]
    engines = _names("--engines", args.engines, ENGINES) if args.engines else default_engines
    if "scratch" not in engines:
        engines.insert(0, "scratch")  # every figure is read against scratch's
    if args.threads < 1:
        raise SpecError(f"--threads: must be >= 1; got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        raise SpecError(f"--repeats: must be >= 1; got {args.repeats}")
    oracle = _oracle_runs(args)
    # The oracle's cost needs the references themselves: those that are installed.
    references = [e for e in FRAMEWORKS if e in engines and installed(*FRAMEWORKS[e])]
    main_job = args.main_job
    if main_job is None:
        main_job = bool(os.environ.get("OCCUPANCY_DATA_DIR")) and not args.quick
    for i, size in enumerate(sizes):
        repeats = args.repeats or (max(3, size.repeats // 4) if args.quick else size.repeats)
        sizes[i] = dataclasses.replace(
            size, repeats=repeats, compile=size.compile or args.compile_all
        )
    plan = Plan(sizes, dtypes, engines, references, oracle if references else [], main_job)
    _check_memory(plan)
    return plan


def _check_memory(plan: Plan, available: int | None = None) -> None:
    """Refuse, before anything is measured, a size or an oracle run that would not fit in
    the memory there is (the same estimate as a run's: comparisons/run/inputs.py)."""
    available = available_memory() if available is None else available
    if available is None:
        return
    for size in plan.sizes:
        for dtype in plan.dtypes:
            n_params = sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(size.sizes))
            rows = size.batch * sum(size.sizes) * ACTIVATION_COPIES
            # each engine's copies, and the bare matmuls' operands as one more engine
            needed = (n_params * COPIES_PER_ENGINE + rows) * (len(plan.engines) + 1)
            needed *= np.dtype(dtype).itemsize
            if needed > available:
                raise SpecError(
                    f"--sizes: {size.label} needs about {memory_text(needed)} of memory ({dtype}), "
                    f"and {memory_text(available)} is available; choose narrower widths or a "
                    "smaller batch"
                )
    for hidden, steps, batch in plan.oracle:
        try:
            check_memory(oracle_spec(hidden, steps, plan.references, batch), available)
        except SpecError as err:
            option = "--oracle-widths" if str(err).startswith("hidden") else "--oracle-steps"
            raise SpecError(f"{option}: {err}") from None


def _oracle_runs(args: argparse.Namespace) -> list[tuple[tuple[int, ...], int, int]]:
    """(hidden widths, steps, batch) of each lockstep run: the steps grow at the first width,
    the widths at the shortest run."""
    per_epoch = ORACLE_ROWS // ORACLE_BATCH
    steps = _integers("--oracle-steps", args.oracle_steps) if args.oracle_steps else None
    if steps is None:
        steps = list(QUICK_ORACLE_STEPS if args.quick else ORACLE_STEPS)
    if any(n < 0 or n % per_epoch for n in steps):
        raise SpecError(f"--oracle-steps: each must be a multiple of {per_epoch}; got {steps}")
    steps = [n for n in steps if n > 0]
    if not steps:
        return []
    widths = (
        [_width(w) for w in args.oracle_widths.split(",")]
        if args.oracle_widths
        else list(QUICK_ORACLE_WIDTHS if args.quick else ORACLE_WIDTHS)
    )
    (first, batch), rest = widths[0], widths[1:]
    return [(first, n, batch) for n in steps] + [(w, steps[0], b) for w, b in rest]


def _width(text: str) -> tuple[tuple[int, ...], int]:
    """``--oracle-widths``' hidden widths and batch: 64-64, or 256-256@256."""
    widths, _, batch = text.partition("@")
    hidden = tuple(_integers("--oracle-widths", widths, "-"))
    size = _integers("--oracle-widths", batch)[0] if batch else ORACLE_BATCH
    if size < 2:
        raise SpecError(f"--oracle-widths: a batch must be at least 2 rows; got {text!r}")
    return hidden, size


def _width_text(hidden: tuple[int, ...], batch: int) -> str:
    """A width as ``--oracle-widths`` takes it."""
    return "-".join(map(str, hidden)) + ("" if batch == ORACLE_BATCH else f"@{batch}")


def _previous(path: Path) -> dict:
    """An earlier bench.json, read before anything is measured; SpecError if it is not one."""
    try:
        previous = read_json(path, COMPARE_LIMIT, "bench.json")
    except FileError as err:
        raise SpecError(f"--compare: {err}") from None
    targets = previous.get("targets") if isinstance(previous, dict) else None
    if not isinstance(targets, list):
        raise SpecError(f"--compare: {path} is not a bench.json (it has no list of targets)")
    for target in targets:  # what ``compare`` reads of each, checked before measuring
        value = target.get("value") if isinstance(target, dict) else "?"
        if not (
            isinstance(target, dict)
            and isinstance(target.get("id"), str)
            and isinstance(target.get("figure"), str)
            and target.get("met") in (True, False, None)
            and (value is None or (isinstance(value, int | float) and not isinstance(value, bool)))
        ):
            raise SpecError(
                f"--compare: {path} is not a bench.json (a target lacks its id, figure, met or "
                f"numeric value: {json.dumps(target, default=str)[:80]})"
            )
    return previous


def _size(text: str) -> Size:
    if text in SIZES:
        return SIZES[text]
    widths, _, batch = text.partition(":")
    try:
        sizes = tuple(int(w) for w in widths.split("-"))
        size = Size(text, sizes, int(batch), 50)
    except ValueError:
        size = None
    if size is None or len(sizes) < 2 or min(sizes) < 1 or size.batch < 1:
        raise SpecError(
            f"--sizes: {text!r} is neither a size ({', '.join(SIZES)}) nor widths and a batch "
            "like 5-8-4-1:50"
        )
    return size


def _names(option: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise SpecError(f"{option}: choose from {', '.join(allowed)}; got {text!r}")
    return names


def _integers(option: str, text: str, sep: str = ",") -> list[int]:
    try:
        return [int(n) for n in text.split(sep)]
    except ValueError:
        raise SpecError(f"{option}: expected integers separated by {sep!r}; got {text!r}") from None
