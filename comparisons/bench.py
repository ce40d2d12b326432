"""Benchmarks: each engine's training step, the machine's matmul bound, and the oracle's cost.

``python -m comparisons bench`` writes ``bench.json`` (every figure), ``bench.md`` (the tables
and the targets, met or not) and ``bench.svg`` (the plots) into ``--out``.

1. Step time. One training step (forward, backward, update) on a fixed batch, per engine, bare:
   nothing is recorded or converted, as each framework is used in practice.
     scratch        ``scratch.training.train_step``, as the scratch engine runs it
     torch          the reference's ``nn.Sequential``, loss and ``torch.optim``, eager
     torch.compile  the same, with forward and loss compiled by inductor (and so the
                    backward, through AOTAutograd); ``optimizer.step`` stays eager
     jax            ``value_and_grad`` of the reference's loss and the optax update, the whole
                    step in one ``jax.jit``
2. The machine's limit. The step's matrix products alone — forward ``A_{l-1} @ W_l``,
   backward ``A_{l-1}.T @ dZ_l`` and ``dZ_l @ W_l.T`` — in NumPy, with scratch's shapes and
   layouts. Every engine computes exactly these products, so FLOP/s = their FLOPs / step time,
   and the bound is their FLOPs / their own time.
3. The oracle's cost. A lockstep run's time over the sum of the engines' bare times over the
   same steps, where the time went, and the heap peak of a whole-run report (tracemalloc:
   Python objects and NumPy arrays; the frameworks' own buffers are not seen), as the number
   of steps and the width grow.

Every time is the median of single-step timings after a warm-up, with min and max, the
garbage collector off (as ``timeit`` does). Thread counts are fixed before anything is timed
and reported: NumPy's BLAS and any OpenMP pool through threadpoolctl, PyTorch's intra-op pool
with ``torch.set_num_threads``; XLA reads ``XLA_FLAGS`` once, when its backend starts, so one
thread is asked for then (with more, XLA runs one thread per core). The default is one thread
per library: the engines run one after another in one process, and where two pools that
spin while they wait (PyTorch's OpenMP, OpenBLAS) share a few cores, or another process
holds them, a step of a small network takes milliseconds of waiting instead of microseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import importlib.util
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comparisons.engines import make_engine
from comparisons.spec import RunSpec, SpecError
from scratch import optimizers
from scratch.network import MLP, init_params
from scratch.optimizers import Optimizer
from scratch.training import train_step

DEFAULT_OUT = Path("reports/bench")
ENGINES = ("scratch", "torch", "torch.compile", "jax")
DTYPES = ("float64", "float32")
# The default Occupancy model's activation, loss and optimizer; a small learning rate, so that
# a batch trained on hundreds of times does not saturate (the time of exp() does not depend on
# its argument, but that of denormal numbers would).
ACTIVATION, LOSS = "sigmoid", "bce_logits"
OPTIMIZER = Optimizer("sgd", lr=0.01)


@dataclass(frozen=True)
class Size:
    """A network and batch to time: ``sizes = (n_0, …, n_L)``, ``repeats`` timed steps."""

    name: str
    sizes: tuple[int, ...]
    batch: int
    repeats: int
    wide: bool = False  # the matmul-bound target applies
    compile: bool = False  # torch.compile is timed here by default (it compiles for ~10-30 s)

    @property
    def label(self) -> str:
        return f"{'-'.join(map(str, self.sizes))} @ {self.batch}"


SIZES = {
    s.name: s
    for s in (
        Size("default", (5, 8, 4, 1), 50, 300, compile=True),  # the Occupancy model
        Size("deep-8x64", (5, *[64] * 8, 1), 50, 200),
        Size("wide-256", (5, 256, 256, 1), 256, 60, wide=True),
        Size("deep-8x512", (5, *[512] * 8, 1), 512, 8),
        Size("wide-1024", (5, 1024, 1024, 1), 1024, 10, wide=True, compile=True),
    )
}
QUICK_SIZES = ("default", "deep-8x64", "wide-256")

# The oracle's cost: synthetic rows in batches of 50, 20 steps an epoch, so that every batch
# has one shape (one JAX compilation) and a run of n steps is n / 20 epochs.
ORACLE_ROWS, ORACLE_BATCH = 1000, 50
ORACLE_STEPS, QUICK_ORACLE_STEPS = (100, 400), (40, 160)
ORACLE_WIDTHS = ((8, 4), (64, 64), (256, 256), (1024, 1024))
QUICK_ORACLE_WIDTHS = ((8, 4), (64, 64))

# The targets.
TARGET_TORCH_RATIO = 2.0  # torch eager's step / scratch's, at the default size
TARGET_BOUND_RATIO = 1.2  # scratch's step / the bare matmul time, at the wide sizes
TARGET_ORACLE_RATIO = 1.5  # lockstep / the engines' bare time
TARGET_MAIN_JOB_S = 20.0  # `tox -e report`'s run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where bench.json, bench.md and bench.svg go (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, fewer repeats, no torch.compile, short oracle runs (~30 s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for every library's pool (default: 1; see the module's docstring)",
    )
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
    parser.add_argument(
        "--oracle-steps",
        metavar="LIST",
        help=f"lockstep run lengths, multiples of {ORACLE_ROWS // ORACLE_BATCH} "
        f"(default: {','.join(map(str, ORACLE_STEPS))}); 0 skips the oracle's cost",
    )
    parser.add_argument(
        "--oracle-widths",
        metavar="LIST",
        help="hidden widths for the oracle's cost, like 8-4,64-64 (default: "
        + ",".join("-".join(map(str, w)) for w in ORACLE_WIDTHS)
        + ")",
    )
    parser.add_argument(
        "--main-job",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time `python -m comparisons run` on Occupancy (default: when OCCUPANCY_DATA_DIR "
        "is set and not --quick)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the targets")


def run(args: argparse.Namespace) -> int:
    """Measure, write ``bench.json``, ``bench.md`` and ``bench.svg``, print the targets."""
    from comparisons.output import write_report_folder

    plan = _plan(args)
    say = (lambda _: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    with fixed_threads(args.threads, plan.engines) as threads:
        report = {
            "schema_version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": _machine(),
            "threads": threads,
            "settings": {
                "activation": ACTIVATION,
                "loss": LOSS,
                "optimizer": vars(OPTIMIZER),
                "quick": args.quick,
            },
            "steps": [],
            "oracle": [],
            "main_job": None,
        }
        for size in plan.sizes:
            for dtype in plan.dtypes:
                say(f"step time: {size.name} ({size.label}), {dtype}")
                report["steps"].append(time_size(size, dtype, plan.engines))
        for hidden, steps in plan.oracle:
            say(f"oracle cost: hidden {hidden}, {steps} steps")
            report["oracle"].append(oracle_cost(hidden, steps, plan.references))
        if plan.main_job:
            say("main job: python -m comparisons run")
            report["main_job"] = time_main_job()
    report["targets"] = targets(report)
    renderers = {"bench.md": render_markdown}
    if _import("matplotlib") is not None:  # the reports extra; without it, no plot
        renderers["bench.svg"] = render_svg
    report["plot"] = "bench.svg" if "bench.svg" in renderers else None
    out = write_report_folder(report, args.out, renderers, json_name="bench.json")
    for line in target_lines(report):
        print(line)
    if not args.quiet:
        print("bench: " + ", ".join(str(out / name) for name in ["bench.json", *renderers]))
    return 0


# --- what to run -------------------------------------------------------------------------


@dataclass
class Plan:
    """What a bench run measures (from the command line; see ``add_arguments``)."""

    sizes: list[Size]  # with the run's repeats and torch.compile choice
    dtypes: list[str]
    engines: list[str]
    references: list[str]  # the engines of the oracle's cost: torch and jax, when asked for
    oracle: list[tuple[tuple[int, ...], int]]  # (hidden widths, steps) of each lockstep run
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
    per_epoch = ORACLE_ROWS // ORACLE_BATCH
    steps = _integers("--oracle-steps", args.oracle_steps) if args.oracle_steps else None
    if steps is None:
        steps = list(QUICK_ORACLE_STEPS if args.quick else ORACLE_STEPS)
    if any(n < 0 or n % per_epoch for n in steps):
        raise SpecError(f"--oracle-steps: each must be a multiple of {per_epoch}; got {steps}")
    steps = [n for n in steps if n > 0]
    widths = (
        [tuple(_integers("--oracle-widths", w, "-")) for w in args.oracle_widths.split(",")]
        if args.oracle_widths
        else list(QUICK_ORACLE_WIDTHS if args.quick else ORACLE_WIDTHS)
    )
    # The oracle's cost needs the references themselves: those that are installed.
    references = [e for e in ("torch", "jax") if e in engines and _installed(e)]
    # Steps grow at the default width; widths grow at the shortest run.
    oracle = [(widths[0], n) for n in steps] + [(w, steps[0]) for w in widths[1:]] if steps else []
    main_job = args.main_job
    if main_job is None:
        main_job = bool(os.environ.get("OCCUPANCY_DATA_DIR")) and not args.quick
    for i, size in enumerate(sizes):
        repeats = args.repeats or (max(3, size.repeats // 4) if args.quick else size.repeats)
        sizes[i] = dataclasses.replace(
            size, repeats=repeats, compile=size.compile or args.compile_all
        )
    return Plan(sizes, dtypes, engines, references, oracle if references else [], main_job)


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


# --- threads and machine -----------------------------------------------------------------


@contextlib.contextmanager
def fixed_threads(threads: int, engines: list[str]) -> Iterator[dict]:
    """Every thread pool fixed at ``threads`` while active (restored after); yields what each
    pool is, for the report. Frameworks are imported here, so that their pools exist."""
    info: dict = {"requested": threads, "usable_cpus": len(os.sched_getaffinity(0))}
    torch = _import("torch") if {"torch", "torch.compile"} & set(engines) else None
    jax = _xla_with_threads(threads) if "jax" in engines else None
    before = torch.get_num_threads() if torch else None
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            info["threadpools"] = "unknown and not fixed (threadpoolctl is not installed)"
        else:
            stack.enter_context(threadpool_limits(limits=threads))
            info["threadpools"] = [
                {k: pool.get(k) for k in ("internal_api", "prefix", "version", "num_threads")}
                for pool in threadpool_info()
            ]
        if torch:
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
            info["torch_intra_op"] = torch.get_num_threads()
        if jax:
            info["xla"] = jax
        yield info


XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _xla_with_threads(threads: int) -> str | None:
    """Start JAX's CPU backend, with one thread if asked and if it has not started yet (XLA
    reads ``XLA_FLAGS`` once, when its backend starts); say what its threads are."""
    if _import("jax") is None:
        return None
    import jax

    started = getattr(jax._src.xla_bridge, "backends_are_initialized", lambda: True)()
    flags = os.environ.get("XLA_FLAGS")
    if threads == 1 and not started:
        os.environ["XLA_FLAGS"] = f"{flags or ''} {XLA_ONE_THREAD}".strip()
        try:
            jax.devices("cpu")
        finally:  # only this process's backend: not the main job's subprocess
            _restore("XLA_FLAGS", flags)
        return f"one thread (XLA_FLAGS={XLA_ONE_THREAD!r} at startup)"
    if threads == 1:
        return f"started before the bench (XLA_FLAGS={flags!r}): not fixed"
    return f"XLA_FLAGS={flags!r}" if flags else f"one thread per core ({os.cpu_count()})"


def _restore(variable: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = value


def _installed(framework: str) -> bool:
    modules = {"torch": ("torch",), "jax": ("jax", "optax")}[framework]
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _import(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "jax", "optax"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "os": platform.platform(), **versions}


# --- 1 and 2: step time and the matmul bound ---------------------------------------------


class ScratchStep:
    """scratch's training step, exactly as the scratch engine takes it."""

    def __init__(self, mlp: MLP, opt: Optimizer, params: dict, dtype: str):
        self.mlp, self.opt = mlp, opt
        self.params, self.state = params, optimizers.init_state(opt, params)

    def batch(self, X: np.ndarray, Y: np.ndarray):
        return X, Y

    def __call__(self, batch) -> None:
        _, self.params, self.state = train_step(self.mlp, self.opt, self.params, self.state, *batch)


class TorchStep:
    """The PyTorch reference's model, loss and optimizer, without its trace: zero_grad,
    forward, loss, backward, ``optimizer.step()``; ``compile`` puts forward and loss (and so
    the backward) through ``torch.compile``."""

    def __init__(self, mlp: MLP, opt: Optimizer, params: dict, dtype: str, compile: bool = False):
        import torch

        from reference.torch_mlp import TorchMLP

        engine = TorchMLP(mlp, opt, dtype=dtype)
        engine.set_state(params, optimizers.init_state(opt, params))
        self.model, self.loss_fn, self.optimizer = engine.model, engine.loss_fn, engine.optimizer
        self.loss = torch.compile(self._loss) if compile else self._loss

    def _loss(self, X, Y):
        return self.loss_fn(self.model(X), Y)

    def batch(self, X: np.ndarray, Y: np.ndarray):
        import torch

        return torch.tensor(X), torch.tensor(Y)

    def __call__(self, batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(*batch).backward()
        self.optimizer.step()


class JaxStep:
    """The JAX reference's forward pass and loss, ``jax.value_and_grad`` and its optax
    update, without the trace (no error terms, no Δ): the whole step in one ``jax.jit``."""

    def __init__(self, mlp: MLP, opt: Optimizer, params: dict, dtype: str):
        import jax
        import optax

        from reference import jax_mlp

        jax_mlp.JaxMLP(mlp, opt, dtype=dtype)  # as a float64 engine does: 64-bit mode on
        weights_only = {p: p.startswith("W") for p in jax_mlp.param_names(mlp)}
        tx = jax_mlp.make_optimizer(opt, weights_only)
        loss_of = jax_mlp.LOSSES[mlp.loss]

        def step(params, opt_state, X, Y):
            def loss(params):
                return loss_of(jax_mlp.forward(mlp, params, X)[1][-1], Y)

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        self._step = jax.jit(step)
        self.params = jax.device_put(params)
        self.opt_state = tx.init(self.params)

    def batch(self, X: np.ndarray, Y: np.ndarray):
        import jax

        return jax.device_put(X), jax.device_put(Y)

    def __call__(self, batch) -> None:
        self.params, self.opt_state, loss = self._step(self.params, self.opt_state, *batch)
        loss.block_until_ready()  # one executable: every output is ready with the loss


def bare_step(engine: str, mlp: MLP, opt: Optimizer, params: dict, dtype: str):
    """The bare training step of ``engine``, starting from ``params``."""
    if engine == "scratch":
        return ScratchStep(mlp, opt, params, dtype)
    if engine in ("torch", "torch.compile"):
        return TorchStep(mlp, opt, params, dtype, compile=engine == "torch.compile")
    return JaxStep(mlp, opt, params, dtype)


def timed(steps: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, dict]:
    """Median, min and max seconds of each step over ``repeats`` rounds, after ``warmup``.

    A round takes every step once, in turn, so that a change in the machine's load (another
    process) touches every step alike and their ratios stay fair.
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    with _gc_off():
        for _ in range(repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "repeats": repeats,
        }
        for name, t in times.items()
    }


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def matmul_products(sizes: tuple[int, ...], batch: int, dtype: str, rng) -> list[tuple]:
    """The operands of every matrix product of one training step, in scratch's layouts:
    forward ``A_{l-1} @ W_l``; backward ``A_{l-1}.T @ dZ_l`` and, below the top,
    ``dZ_l @ W_l.T`` (the transposes are views, as in scratch)."""
    L = len(sizes) - 1
    A = [rng.standard_normal((batch, n)).astype(dtype) for n in sizes]  # A_0 … A_L
    W = [rng.standard_normal((sizes[l - 1], sizes[l])).astype(dtype) for l in range(1, L + 1)]
    dZ = [rng.standard_normal((batch, sizes[l])).astype(dtype) for l in range(1, L + 1)]
    products = [(A[l - 1], W[l - 1]) for l in range(1, L + 1)]
    for l in range(L, 0, -1):
        products.append((A[l - 1].T, dZ[l - 1]))
        if l > 1:
            products.append((dZ[l - 1], W[l - 1].T))
    return products


def matmul_flops(products: list[tuple]) -> int:
    """2·m·k·n per product (m·n dot products of length k, a multiply and an add each)."""
    return sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)


def time_size(size: Size, dtype: str, engines: list[str]) -> dict:
    """Every engine's bare step at one size and dtype, and the bare matmuls, timed in turn."""
    rng = np.random.default_rng(0)
    mlp = MLP(size.sizes, ACTIVATION, "identity", LOSS)
    params = init_params(mlp, seed=0, dtype=dtype)
    X = rng.standard_normal((size.batch, size.sizes[0])).astype(dtype)
    Y = (rng.random((size.batch, size.sizes[-1])) < 0.5).astype(dtype)
    products = matmul_products(size.sizes, size.batch, dtype, rng)
    flops = matmul_flops(products)
    steps: dict[str, Callable[[], object]] = {"matmuls": lambda: [a @ b for a, b in products]}
    results: dict[str, dict] = {}
    for engine in engines:
        if engine == "torch.compile" and not size.compile:
            results[engine] = {"skipped": "not at this size (--compile-all times it)"}
            continue
        started = time.perf_counter()
        try:
            step = bare_step(engine, mlp, OPTIMIZER, params, dtype)
            batch = step.batch(X, Y)
            step(batch)  # the first step: for torch.compile and jax, the compilation
        except ImportError as err:
            results[engine] = {"unavailable": f"not installed: {err.name or err}"}
            continue
        except Exception as err:  # torch.compile can fail in many ways: say how, go on
            first_line = (str(err).strip().splitlines() or [""])[0]
            results[engine] = {"unavailable": f"{type(err).__name__}: {first_line}"[:300]}
            continue
        results[engine] = {"first_step_s": time.perf_counter() - started}
        steps[engine] = functools.partial(step, batch)
    times = timed(steps, warmup=max(2, size.repeats // 10), repeats=size.repeats)
    for name, t in times.items():
        t["gflops"] = flops / t["median_s"] / 1e9
        if name in results:
            results[name].update(t)
    return {
        "size": size.name,
        "label": size.label,
        "sizes": list(size.sizes),
        "batch": size.batch,
        "dtype": dtype,
        "wide": size.wide,
        "matmul_flops": flops,
        "matmul_bound": times["matmuls"],
        "engines": results,
    }


# --- 3: the oracle's cost ----------------------------------------------------------------


class _Timed:
    """An engine that adds up the seconds spent in its set_state and step (the references'
    recording and conversion, inside a lockstep run)."""

    def __init__(self, engine):
        self.engine, self.seconds = engine, 0.0
        self.name = engine.name

    def set_state(self, params, opt_state) -> None:
        start = time.perf_counter()
        self.engine.set_state(params, opt_state)
        self.seconds += time.perf_counter() - start

    def step(self, X, Y):
        start = time.perf_counter()
        trace = self.engine.step(X, Y)
        self.seconds += time.perf_counter() - start
        return trace

    def predict(self, X):
        return self.engine.predict(X)

    def params(self):
        return self.engine.params()


def oracle_spec(hidden: tuple[int, ...], steps: int, references: list[str]) -> RunSpec:
    """The default model's settings on synthetic data (5 features, 2 classes), ``hidden``
    widths, ``steps`` steps of one batch shape."""
    return RunSpec(
        dataset="synthetic",
        synthetic_rows=ORACLE_ROWS,
        synthetic_features=5,
        hidden=tuple(hidden),
        batch_size=ORACLE_BATCH,
        epochs=steps // (ORACLE_ROWS // ORACLE_BATCH),
        engines=("scratch", *references),
    )


def oracle_cost(hidden: tuple[int, ...], steps: int, references: list[str]) -> dict:
    """Lockstep time against the engines' bare time over the same steps, where it went, and
    the heap peak of the whole-run report."""
    from comparisons.jobs import run_lockstep
    from comparisons.lockstep import lockstep
    from comparisons.problem import build_problem
    from comparisons.report import json_safe

    problem = build_problem(oracle_spec(hidden, steps, references))
    mlp, opt, dtype = problem.mlp, problem.optimizer, problem.spec.dtype
    refs = {name: _Timed(make_engine(name, mlp, opt, dtype)) for name in references}
    lockstep(problem, refs, steps=problem.schedule.steps[:2])  # compiles JAX's step
    for ref in refs.values():
        ref.seconds = 0.0
    with _gc_off():
        start = time.perf_counter()
        result = lockstep(problem, refs)
        lockstep_s = time.perf_counter() - start

    X, Y = problem.train
    bare = {}
    for name in ("scratch", *references):
        step = bare_step(name, mlp, opt, problem.params0, dtype)
        batches = [step.batch(X[s.rows], Y[s.rows]) for s in problem.schedule.steps]
        step(batches[0])  # compiles JAX's step
        with _gc_off():
            start = time.perf_counter()
            for batch in batches:
                step(batch)
            bare[name] = time.perf_counter() - start
    traced = {name: ref.seconds for name, ref in refs.items()}

    gc.collect()
    tracemalloc.start()
    try:
        report = run_lockstep(problem)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "hidden": list(hidden),
        "sizes": list(mlp.sizes),
        "steps": result.steps_run,
        "agree": result.agree,
        "lockstep_s": lockstep_s,
        "bare_s": bare,
        "bare_total_s": sum(bare.values()),
        "ratio": lockstep_s / sum(bare.values()),
        "breakdown_s": {
            "scratch (bare)": bare["scratch"],
            **{f"{name}: load state, step, trace to NumPy": s for name, s in traced.items()},
            "comparison and bookkeeping": lockstep_s - bare["scratch"] - sum(traced.values()),
        },
        "report_peak_mib": peak / 2**20,
        "report_json_kib": len(json.dumps(json_safe(report))) / 2**10,
    }


def time_main_job() -> dict:
    """``python -m comparisons run`` on Occupancy, as ``tox -e report`` runs it (its own
    threads: the bench's settings do not reach it), wall time from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "comparisons", "run", "--out", str(Path(tmp) / "r"), "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        timings = {}
        with contextlib.suppress(OSError, ValueError):
            timings = json.loads((Path(tmp) / "r" / "report.json").read_text())["timings"]
    return {
        "wall_s": wall,
        "exit_status": done.returncode,
        "first_line": (done.stdout.strip().splitlines() or [""])[0][:200],
        "timings": timings,
    }


# --- the targets -------------------------------------------------------------------------


def _median(row: dict, engine: str) -> float | None:
    return row["engines"].get(engine, {}).get("median_s")


def targets(report: dict) -> list[dict]:
    """Each of the issue's targets with its figures and whether it is met (None: not measured)."""
    out = []
    for row in report["steps"]:
        if row["size"] != "default":
            continue
        scratch, torch, jax = (_median(row, e) for e in ("scratch", "torch", "jax"))
        out.append(
            _target(
                f"default size, {row['dtype']}: scratch ≥ {TARGET_TORCH_RATIO:g}× faster than "
                "PyTorch eager",
                torch / scratch if torch and scratch else None,
                lambda r: r >= TARGET_TORCH_RATIO,
                "torch eager / scratch = {:.2f}×",
            )
        )
        out.append(
            _target(
                f"default size, {row['dtype']}: scratch no slower than JAX jit",
                jax / scratch if jax and scratch else None,
                lambda r: r >= 1.0,
                "jax jit / scratch = {:.2f}×",
            )
        )
    for row in report["steps"]:
        if row["wide"]:
            scratch = _median(row, "scratch")
            out.append(
                _target(
                    f"{row['size']}, {row['dtype']}: scratch within {TARGET_BOUND_RATIO:g}× of "
                    "the bare-matmul bound",
                    scratch / row["matmul_bound"]["median_s"] if scratch else None,
                    lambda r: r <= TARGET_BOUND_RATIO,
                    "scratch / bare matmuls = {:.2f}×",
                )
            )
    for row in report["oracle"]:
        out.append(
            _target(
                f"lockstep overhead, {'-'.join(map(str, row['sizes']))}, {row['steps']} steps: "
                f"under {TARGET_ORACLE_RATIO:g}× the engines' own time",
                row["ratio"],
                lambda r: r < TARGET_ORACLE_RATIO,
                "lockstep / bare engines = {:.2f}×",
            )
        )
    job = report["main_job"]
    out.append(
        _target(
            f"the main job (tox -e report's run) under {TARGET_MAIN_JOB_S:g} s",
            job["wall_s"] if job and job["exit_status"] in (0, 1) else None,
            lambda s: s < TARGET_MAIN_JOB_S,
            "{:.1f} s",
        )
    )
    return out


def _target(name: str, value: float | None, ok: Callable[[float], bool], fmt: str) -> dict:
    return {
        "target": name,
        "value": value,
        "met": None if value is None else bool(ok(value)),
        "figure": "not measured" if value is None else fmt.format(value),
    }


def target_lines(report: dict) -> list[str]:
    marks = {True: "MET   ", False: "MISSED", None: "  –   "}
    return [f"{marks[t['met']]} {t['target']}: {t['figure']}" for t in report["targets"]]


# --- Markdown and SVG ----------------------------------------------------------------------


def _ms(entry: dict | None) -> str:
    if not entry:
        return "–"
    if "median_s" not in entry:
        return entry.get("unavailable") or entry.get("skipped") or "–"
    return f"{_fmt_ms(entry['median_s'])} ({_fmt_ms(entry['min_s'])}–{_fmt_ms(entry['max_s'])})"


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def render_markdown(report: dict) -> str:
    engines = list(dict.fromkeys(e for row in report["steps"] for e in row["engines"]))
    m, t = report["machine"], report["threads"]
    lines = [
        "# Benchmarks: scratch, PyTorch and JAX per training step",
        "",
        f"{m['cpu']}, {m['cpu_count']} CPUs ({t['usable_cpus']} usable); "
        + ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("cpu", "cpu_count", "os")),
        "",
        f"Threads: {t['requested']} requested; torch intra-op {t.get('torch_intra_op', '–')}; "
        f"{t.get('xla', 'XLA: not used')}; thread pools: " + _pools(t["threadpools"]) + ".",
        "",
        "## Targets",
        "",
        *[f"- **{_met(x['met'])}** {x['target']}: {x['figure']}" for x in report["targets"]],
        "",
        "## Time per training step",
        "",
        "Median (min–max) milliseconds of one step (forward, backward, update) on a fixed "
        "batch, after a warm-up; bare steps, no trace recorded.",
        "",
        "| size | dtype | " + " | ".join(engines) + " | torch / scratch | jax / scratch |",
        "|---|---|" + "---|" * len(engines) + "---|---|",
    ]
    for row in report["steps"]:
        scratch = _median(row, "scratch")
        ratios = [
            f"{_median(row, e) / scratch:.2f}×" if _median(row, e) and scratch else "–"
            for e in ("torch", "jax")
        ]
        cells = [_ms(row["engines"].get(e)) for e in engines]
        lines.append(f"| {row['label']} | {row['dtype']} | " + " | ".join(cells + ratios) + " |")
    lines += [
        "",
        "## The machine's limit",
        "",
        "GFLOP/s of each engine's step, counting only its matrix products, against the same "
        "products timed alone in NumPy (the bound).",
        "",
        "| size | dtype | GFLOP / step | bare matmuls (ms) | bound GFLOP/s | "
        + " | ".join(engines)
        + " | scratch / bound |",
        "|---|---|---|---|---|" + "---|" * len(engines) + "---|",
    ]
    for row in report["steps"]:
        bound, scratch = row["matmul_bound"], _median(row, "scratch")
        cells = [
            f"{row['engines'][e]['gflops']:.3g}" if "gflops" in row["engines"].get(e, {}) else "–"
            for e in engines
        ]
        ratio = f"{scratch / bound['median_s']:.2f}×" if scratch else "–"
        lines.append(
            f"| {row['label']} | {row['dtype']} | {row['matmul_flops'] / 1e9:.3g} | "
            f"{_ms(bound)} | {bound['gflops']:.3g} | " + " | ".join([*cells, ratio]) + " |"
        )
    if report["oracle"]:
        lines += [
            "",
            "## The oracle's cost",
            "",
            "A lockstep run (float64; the default model's settings on synthetic data, batches "
            "of 50) against the sum of the engines' bare training time over the same steps, in "
            "milliseconds per step, and where the lockstep time went; the heap peak of a "
            "whole-run report (tracemalloc: Python objects and NumPy arrays, not the "
            "frameworks' own buffers) and the size of its report.json.",
            "",
            "| network | steps | lockstep | bare engines | ratio | scratch | references: load "
            "state, step, trace to NumPy | comparison and bookkeeping | report peak (MiB) | "
            "report.json (KiB) | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in report["oracle"]:
            per_step = {k: 1e3 * v / row["steps"] for k, v in row["breakdown_s"].items()}
            traced = sum(v for k, v in per_step.items() if k.endswith("trace to NumPy"))
            lines.append(
                f"| {'-'.join(map(str, row['sizes']))} | {row['steps']} | "
                f"{1e3 * row['lockstep_s'] / row['steps']:.3g} | "
                f"{1e3 * row['bare_total_s'] / row['steps']:.3g} | {row['ratio']:.2f}× | "
                f"{per_step['scratch (bare)']:.3g} | {traced:.3g} | "
                f"{per_step['comparison and bookkeeping']:.3g} | {row['report_peak_mib']:.1f} | "
                f"{row['report_json_kib']:.0f} | {'agree' if row['agree'] else 'DISAGREE'} |"
            )
    job = report["main_job"]
    if job:
        lines += [
            "",
            "## The main job",
            "",
            f"`python -m comparisons run` on Occupancy: {job['wall_s']:.1f} s from start to exit "
            f"(exit status {job['exit_status']}; the run itself "
            f"{job['timings'].get('run_s', float('nan')):.1f} s). {job['first_line']}",
        ]
    if report.get("plot"):
        lines += ["", f"![the figures]({report['plot']})"]
    return "\n".join([*lines, ""])


def _met(met: bool | None) -> str:
    return {True: "met", False: "missed", None: "not measured"}[met]


def _pools(pools) -> str:
    if isinstance(pools, str):
        return pools
    return ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in pools) or "none"


ENGINE_COLORS = {
    "scratch": "#222222",
    "torch": "#d9480f",
    "torch.compile": "#f59f00",
    "jax": "#1c7ed6",
}


def render_svg(report: dict) -> str:
    """Step time per size and engine (log scale), GFLOP/s against the matmul bound, and the
    oracle's overhead ratio; an SVG page (text, so it is written like the other files)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dtypes = list(dict.fromkeys(row["dtype"] for row in report["steps"]))
    panels = len(dtypes) + 1 + bool(report["oracle"])
    fig = Figure(figsize=(8.0, 3.2 * panels))
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    engines = list(dict.fromkeys(e for row in report["steps"] for e in row["engines"]))
    for ax, dtype in zip(axes, dtypes, strict=False):
        rows = [row for row in report["steps"] if row["dtype"] == dtype]
        width = 0.8 / (len(engines) + 1)
        x = np.arange(len(rows))
        for i, engine in enumerate(["bare matmuls", *engines]):
            values = [
                row["matmul_bound"]["median_s"] if i == 0 else _median(row, engine) or np.nan
                for row in rows
            ]
            color = "#adb5bd" if i == 0 else ENGINE_COLORS.get(engine, "#868e96")
            offset = (i - len(engines) / 2) * width
            ax.bar(x + offset, np.array(values) * 1e3, width, label=engine, color=color)
        ax.set_yscale("log")
        ax.set_xticks(x, [row["size"] for row in rows])
        ax.set_ylabel("ms per step")
        ax.set_title(f"time per training step, {dtype} (lower is better)")
        ax.legend(fontsize="small", ncols=3)
    ax = axes[len(dtypes)]
    for row_dtype, style in zip(dtypes, ("-", "--"), strict=False):
        rows = [row for row in report["steps"] if row["dtype"] == row_dtype]
        x = np.arange(len(rows))
        for engine in engines:
            # the share of the bound reached: bare matmul time / the engine's step time
            values = [r["matmul_bound"]["median_s"] / (_median(r, engine) or np.nan) for r in rows]
            color = ENGINE_COLORS.get(engine, "#868e96")
            ax.plot(x, values, style, marker="o", color=color, label=f"{engine}, {row_dtype}")
        ax.set_xticks(x, [r["size"] for r in rows])
    ax.axhline(1 / TARGET_BOUND_RATIO, color="#e03131", linestyle=":", label="target (wide)")
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("bare matmuls / step time")
    ax.set_title("share of the bare-matmul bound reached (FLOP/s over the bound's FLOP/s)")
    ax.legend(fontsize="x-small", ncols=3)
    if report["oracle"]:
        ax = axes[-1]
        labels = [f"{'-'.join(map(str, r['sizes']))}\n{r['steps']} steps" for r in report["oracle"]]
        ax.bar(range(len(labels)), [r["ratio"] for r in report["oracle"]], color="#495057")
        ax.axhline(TARGET_ORACLE_RATIO, color="#e03131", linestyle="--", label="target")
        ax.set_xticks(range(len(labels)), labels, fontsize="small")
        ax.set_ylabel("lockstep / bare engines")
        ax.set_title("the oracle's cost: a lockstep run over the engines' own time")
        ax.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
