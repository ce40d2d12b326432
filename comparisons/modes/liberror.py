"""Measure each framework's error for the elementwise functions the allowances use, against
mpmath, and write the table the allowances read (``oracle/library_error.py`` says how)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from comparisons.oracle.library_error import FUNCTIONS, TABLE
from comparisons.oracle.library_error import table as committed_table

PRECISION = 113  # bits of mpmath's exact values: quadruple precision
POINTS = 3000  # per function and dtype; the quick re-measure takes every QUICK-th
QUICK = 10
DTYPES = ("float64", "float32")
# cos's allowance is absolute (of the schedule's base rate): its error is in units of u
ABSOLUTE = {"cos"}
# A library function's error depends on the code path the CPU's instruction sets select (JAX's
# float64 rsqrt is 1.21 u under AVX-512 and 1.39 u under AVX2), so the table holds the worst
# over these x86-64 variants too, each measured in a child process with the libraries'
# kernel-selecting variables (report/environment.py's KERNEL_VARIABLES) restricting them:
# the table then holds on an older CPU, or one of another vendor, as on this one.
KERNEL_VARIANTS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_CBWR": "AVX2",
        "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
    },
    "baseline": {
        "ATEN_CPU_CAPABILITY": "default",
        "DNNL_MAX_CPU_ISA": "SSE41",
        "MKL_CBWR": "COMPATIBLE",
        "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2",
    },
}


def points(function: str, dtype: str, n: int = POINTS) -> np.ndarray:
    """The inputs of ``function`` in ``dtype``: a fixed draw across its domain (magnitudes
    spread evenly in log scale, both signs where the domain has them, and uniform draws where
    the function bends), without values whose result overflows or falls below the smallest
    normal number. The same for every framework and every run."""
    rng = np.random.default_rng([7, list(FUNCTIONS).index(function), DTYPES.index(dtype)])
    big = math_log(np.finfo(dtype).max) - 1.0  # the largest x with e^x finite, nearly
    tiny_exp, max_exp = np.log10(np.finfo(dtype).tiny) + 1, np.log10(np.finfo(dtype).max) - 1
    third = n // 3

    def magnitudes(low: float, high: float, k: int) -> np.ndarray:
        return 10.0 ** rng.uniform(low, high, k)

    def signed(x: np.ndarray) -> np.ndarray:
        return x * rng.choice([-1.0, 1.0], x.size)

    if function == "expm1":  # ELU's negative side, and small arguments of both signs
        x = np.concatenate([rng.uniform(-big, 0.0, third), signed(magnitudes(-12, 0, n - third))])
    elif function == "exp":
        x = np.concatenate(
            [rng.uniform(-big, big, 2 * third), signed(magnitudes(-10, 0, n - 2 * third))]
        )
    elif function in ("log", "sqrt", "rsqrt"):
        x = np.concatenate(
            [magnitudes(tiny_exp, max_exp, 2 * third), 1.0 + rng.uniform(-0.5, 0.5, n - 2 * third)]
        )
    elif function == "log1p":
        x = np.concatenate(
            [
                signed(magnitudes(-12, -0.5, third)),
                rng.uniform(-0.99, 1.0, third),
                magnitudes(0, max_exp, n - 2 * third),
            ]
        )
    elif function == "tanh":
        x = np.concatenate([signed(magnitudes(-10, 1.5, 2 * third)), rng.uniform(-20, 20, third)])
    elif function in ("logistic", "softplus", "logistic_grad"):
        x = np.concatenate(
            [
                signed(magnitudes(-10, np.log10(big), 2 * third)),
                rng.uniform(-40, 40, n - 2 * third),
            ]
        )
    elif function == "cos":
        x = np.concatenate([rng.uniform(0.0, np.pi, 2 * third), magnitudes(-8, 0, n - 2 * third)])
    else:
        raise KeyError(function)
    return np.sort(x.astype(dtype))


def math_log(x: float) -> float:
    return float(np.log(np.float64(x)))  # the log of a float32's max, without overflow


def exact(function: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The function at each point to ``PRECISION`` bits (mpmath numbers), and each error's
    scale: |exact| (at least the floor), or for ``logistic_grad`` — σ(z) - y for y = 0, then
    y = 1, one after the other — (σ(z) + y)·(1 + |z|)."""
    import mpmath

    mp = mpmath.mp
    mp.prec = PRECISION
    f: Callable = {
        "exp": mp.exp,
        "expm1": mp.expm1,
        "log": mp.log,
        "log1p": mp.log1p,
        "tanh": mp.tanh,
        "logistic": lambda v: 1 / (1 + mp.exp(-v)),
        "logistic_grad": lambda v: 1 / (1 + mp.exp(-v)),
        "softplus": lambda v: mp.log1p(mp.exp(v)),
        "sqrt": mp.sqrt,
        "rsqrt": lambda v: 1 / mp.sqrt(v),
        "cos": mp.cos,
    }[function]
    truth = np.array([f(mp.mpf(float(v))) for v in x], dtype=object)
    if function == "logistic_grad":
        sigma = truth.astype(np.float64)
        spread = 1.0 + np.abs(x.astype(np.float64))
        return np.concatenate([truth, truth - 1]), np.concatenate(
            [sigma * spread, (sigma + 1.0) * spread]
        )
    if function == "softplus":  # the loss's allowance: u·(|ℓ| + |z|) per term
        return truth, np.abs(truth.astype(np.float64)) + np.abs(x.astype(np.float64))
    return truth, np.abs(truth.astype(np.float64))


def _errors(values: np.ndarray, truth: np.ndarray, scale: np.ndarray, dtype: str):
    """The worst |value - exact| / (u·scale) over the points, and its index (the difference
    taken in mpmath, so that it adds no rounding of its own)."""
    u = float(np.finfo(dtype).eps) / 2
    worst, at = 0.0, 0
    for i, (v, t, s) in enumerate(zip(values.astype(np.float64), truth, scale, strict=True)):
        if not np.isfinite(v):
            return float("inf"), i
        err = float(abs(t - v)) / (u * s)
        if err > worst:
            worst, at = err, i
    return worst, at


def _usable(x: np.ndarray, function: str, dtype: str) -> np.ndarray:
    """The points whose exact result is a normal number of the dtype (cos: any; the
    logistic's gradient: where σ(z) is)."""
    truth, _ = exact("logistic" if function == "logistic_grad" else function, x)
    info = np.finfo(dtype)
    magnitude = np.abs(truth.astype(np.float64))
    if function in ABSOLUTE:
        return np.isfinite(magnitude)
    return (magnitude >= float(info.tiny)) & (magnitude <= float(info.max))


def implementations() -> dict[str, Callable[[str, np.ndarray, str], np.ndarray]]:
    """{"framework/device": evaluate(function, x, dtype) -> values as NumPy}: NumPy, and
    PyTorch and JAX on each device they can reach (a framework that is not installed is
    left out)."""
    out = {"numpy/cpu": _numpy}
    try:
        import torch

        out["torch/cpu"] = _torch("cpu")
        if torch.cuda.is_available():
            out["torch/cuda"] = _torch("cuda")
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        for device in {d.platform for d in jax.devices()} | {"cpu"}:
            out[f"jax/{device}"] = _jax(device)
    except ImportError:
        pass
    return out


def _numpy(function: str, x: np.ndarray, dtype: str) -> np.ndarray:
    """NumPy's functions, and scratch's own formulas where NumPy has none."""
    from scratch.activations import sigmoid

    with np.errstate(all="ignore"):
        return {
            "exp": np.exp,
            "expm1": np.expm1,
            "log": np.log,
            "log1p": np.log1p,
            "tanh": np.tanh,
            "logistic": sigmoid,
            # scratch's losses.bce_logits, elementwise: its loss at y = 0, its gradient
            "softplus": lambda v: np.maximum(v, 0.0) + np.log1p(np.exp(-np.abs(v))),
            "logistic_grad": lambda v: np.concatenate([sigmoid(v), sigmoid(v) - 1]),
            "sqrt": np.sqrt,
            "rsqrt": lambda v: 1 / np.sqrt(v),
            "cos": np.cos,
        }[function](x)


def _torch(device: str):
    import torch
    import torch.nn.functional as F

    functions = {
        "exp": torch.exp,
        "expm1": torch.expm1,
        "log": torch.log,
        "log1p": torch.log1p,
        "tanh": torch.tanh,
        "logistic": torch.sigmoid,
        # the reference's BCEWithLogitsLoss, elementwise: its loss at y = 0
        "softplus": lambda v: F.binary_cross_entropy_with_logits(
            v, torch.zeros_like(v), reduction="none"
        ),
        "sqrt": torch.sqrt,
        "rsqrt": torch.rsqrt,
        "cos": torch.cos,
    }

    def gradient(v):  # autograd of the loss: σ(z) - y at y = 0, then y = 1
        out = []
        for y in (0.0, 1.0):
            z = v.clone().requires_grad_(True)
            target = torch.full_like(z, y)
            F.binary_cross_entropy_with_logits(z, target, reduction="sum").backward()
            out.append(z.grad)
        return torch.cat(out)

    def evaluate(function: str, x: np.ndarray, dtype: str) -> np.ndarray:
        v = torch.from_numpy(x).to(device)
        if function == "logistic_grad":
            return gradient(v).detach().cpu().numpy()
        with torch.no_grad():
            return functions[function](v).cpu().numpy()

    return evaluate


def _jax(device: str):
    import jax
    import jax.numpy as jnp
    import optax

    from reference.jax_mlp import log1p

    def gradient(v):  # autodiff of the reference's loss: σ(z) - y at y = 0, then y = 1
        loss = jax.vmap(jax.grad(optax.sigmoid_binary_cross_entropy))
        return jnp.concatenate([loss(v, jnp.zeros_like(v)), loss(v, jnp.ones_like(v))])

    functions = {
        "exp": jnp.exp,
        "expm1": jnp.expm1,
        "log": jnp.log,
        "log1p": log1p,  # the reference's: jnp.log1p but on [-0.45, -0.3] (jax_mlp.py)
        "tanh": jnp.tanh,
        "logistic": jax.nn.sigmoid,
        # the reference's optax.sigmoid_binary_cross_entropy, elementwise: its loss at y = 0
        "softplus": lambda v: optax.sigmoid_binary_cross_entropy(v, jnp.zeros_like(v)),
        "logistic_grad": gradient,
        "sqrt": jnp.sqrt,
        "rsqrt": jax.lax.rsqrt,
        "cos": jnp.cos,
    }
    compiled = {name: jax.jit(f) for name, f in functions.items()}  # as the reference runs
    target = jax.devices(device)[0]

    def evaluate(function: str, x: np.ndarray, dtype: str) -> np.ndarray:
        return np.asarray(compiled[function](jax.device_put(x, target)))

    return evaluate


def measure_all_variants(on_function: Callable[[str], None] | None = None) -> dict:
    """``measure`` here, and again under each of ``KERNEL_VARIANTS`` (x86-64 only, where the
    variables mean something): per entry the worst of them, with where it was found, and the
    variants measured in the environment. A variant whose child process fails is named in
    ``not_measured``, never dropped without a word."""
    found = measure(on_function=on_function)
    found["environment"]["kernel_variants"] = ["native"]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return found
    for variant, variables in KERNEL_VARIANTS.items():
        if on_function is not None:
            on_function(f"every function again, kernels restricted to {variant}")
        try:
            other = measured_in_child(variables)
        except (subprocess.SubprocessError, OSError, ValueError) as err:
            found["environment"].setdefault("not_measured", {})[variant] = str(err)[-300:]
            continue
        found["environment"]["kernel_variants"].append(variant)
        for dtype, functions in other["measured"].items():
            for function, engines in functions.items():
                for engine, err in engines.items():
                    held = found["measured"][dtype][function]
                    if err > held.get(engine, -1.0):
                        held[engine] = err
                        at = other["worst_at"][dtype][function][engine]
                        found["worst_at"][dtype][function][engine] = {**at, "kernels": variant}
    return found


def measured_in_child(variables: dict[str, str], quick: bool = False) -> dict:
    """``measure(quick)`` in a child Python with ``variables`` set (XLA_FLAGS appended to
    what is set already), on this checkout: its table."""
    env = {**os.environ, **variables}
    if os.environ.get("XLA_FLAGS") and "XLA_FLAGS" in variables:
        env["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {variables['XLA_FLAGS']}"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    code = "import json, sys; from comparisons.modes import liberror; "
    code += f"json.dump(liberror.measure(quick={quick}), sys.stdout)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise subprocess.SubprocessError(f"exit {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def measure(quick: bool = False, on_function: Callable[[str], None] | None = None) -> dict:
    """The table: per dtype, function and framework/device, the worst error in units of u,
    and where it was (x, the value, the exact one), in this process's environment."""
    engines = implementations()
    measured: dict = {d: {} for d in DTYPES}
    worst_at: dict = {d: {} for d in DTYPES}
    for dtype in DTYPES:
        for function in FUNCTIONS:
            if on_function is not None:
                on_function(f"{function} {dtype}")
            x = points(function, dtype)
            if quick:
                x = x[::QUICK]
            x = x[_usable(x, function, dtype)]
            truth, scale = exact(function, x)
            if function in ABSOLUTE:
                scale = np.ones_like(scale)
            measured[dtype][function], worst_at[dtype][function] = {}, {}
            for name, evaluate in engines.items():
                values = np.asarray(evaluate(function, x, dtype)).reshape(-1)
                err, i = _errors(values, truth, scale, dtype)
                measured[dtype][function][name] = round(float(err), 3)
                worst_at[dtype][function][name] = {
                    "x": float(x[i % len(x)]),
                    "value": float(values[i]),
                    "exact": float(truth[i]),
                }
    return {
        "about": (
            "Each framework's worst error, in units of the dtype's unit roundoff u, for the "
            "elementwise functions the allowances use: max |f(x) - exact| / (u·|exact|) over "
            f"{POINTS} points per function (cos: / u, an absolute error), exact from mpmath "
            f"at {PRECISION} bits. Written by `python -m comparisons liberror`; read by "
            "comparisons/oracle/library_error.py."
        ),
        "points": POINTS if not quick else len(range(0, POINTS, QUICK)),
        "environment": _environment(engines),
        "measured": measured,
        "worst_at": worst_at,
    }


def _environment(engines: dict) -> dict:
    versions = {}
    for package in ("numpy", "torch", "jax", "jaxlib", "mpmath"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "engines": list(engines),
    }


def render_markdown(found: dict) -> str:
    """docs/library-error.md: the table, the term each allowance takes, and the worst points."""
    from comparisons.oracle.library_error import library_units_of

    engines = found["environment"]["engines"]
    lines = [
        "# Measured library error",
        "",
        "<!-- Generated by `python -m comparisons liberror` from "
        "comparisons/oracle/library_error.json; do not edit. -->",
        "",
        "The allowances give a value computed by a library function a few units of its "
        "result; how many is measured here, not assumed. For each elementwise function the "
        "allowances use, each framework (NumPy, with scratch's own formula for the logistic; "
        "PyTorch; JAX, compiled as the reference runs it) was evaluated on "
        f"{found['points']} fixed points across the function's domain and compared with the "
        "exact value (mpmath, 113 bits). Each cell is the worst error found, in units of the "
        "dtype's unit roundoff u (2^-53 in float64, 2^-24 in float32; one ulp of a result in "
        "[1, 2) is 2u): max |f(x) − exact| / (u·|exact|) (cos: / u, absolute, as its "
        "allowance is). The allowance's term for a function is the worst over every framework "
        "and device, rounded up, and at least 1.",
        "",
        "Regenerate after a framework upgrade: `python -m comparisons liberror` (a test "
        "re-measures a tenth of the points and fails where this table understates them).",
        "",
        f"Measured on {found['environment']['processor']}, Python "
        f"{found['environment']['python']}, "
        + ", ".join(f"{k} {v}" for k, v in found["environment"]["versions"].items())
        + f"; devices: {', '.join(engines)}; kernels: "
        + ", ".join(found["environment"].get("kernel_variants", ["native"]))
        + " (each cell is the worst over them; `KERNEL_VARIANTS` in comparisons/modes/"
        "liberror.py says what each restricts).",
        "",
    ]
    for variant, why in found["environment"].get("not_measured", {}).items():
        lines += [f"Not measured: kernels restricted to {variant}: {why}", ""]
    for dtype in DTYPES:
        lines += [
            f"## {dtype}",
            "",
            "| function | used for | " + " | ".join(engines) + " | allowance term |",
            "| --- | --- | " + " | ".join("---:" for _ in engines) + " | ---: |",
        ]
        for function, use in FUNCTIONS.items():
            cells = [f"{found['measured'][dtype][function][e]:.2f}" for e in engines]
            term = library_units_of(found, dtype, function)
            use = use.replace("|", "\\|")  # a table cell's bar
            lines.append(f"| {function} | {use} | " + " | ".join(cells) + f" | {term:g} |")
        lines += ["", "Where each framework's worst error was found (x, its value, exact):", ""]
        for function in FUNCTIONS:
            worst = max(engines, key=lambda e, f=function: found["measured"][dtype][f][e])
            at = found["worst_at"][dtype][function][worst]
            kernels = f" (kernels: {at['kernels']})" if "kernels" in at else ""
            lines.append(
                f"- {function}: {worst} at x = {at['x']:.17g}: {at['value']:.17g}, exact "
                f"{at['exact']:.17g}{kernels}"
            )
        lines.append("")
    return "\n".join(lines)


def understated(table: dict, remeasured: dict) -> list[str]:
    """Where ``remeasured`` (a quick re-measure, on the table's own points) finds more error
    than ``table`` holds, or a function, dtype or framework the table lacks: one line each."""
    found = []
    for dtype, functions in remeasured["measured"].items():
        for function, engines in functions.items():
            held = table["measured"].get(dtype, {}).get(function, {})
            for engine, err in engines.items():
                if engine not in held:
                    found.append(f"{function} {dtype} {engine}: not in the table")
                elif err > held[engine]:
                    found.append(
                        f"{function} {dtype} {engine}: {err:.3f} u measured, the table holds "
                        f"{held[engine]:.3f}"
                    )
    return found


def add_options(parser: argparse.ArgumentParser) -> None:
    """``python -m comparisons liberror``'s options."""
    parser.add_argument("--table", default=str(TABLE), help=f"the table (default {TABLE})")
    parser.add_argument(
        "--docs", default="docs/library-error.md", help="its page (default docs/library-error.md)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="re-measure a tenth of the points and say whether the table holds them (exit 1 "
        "where it understates); writes nothing",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the result")


def command(args: argparse.Namespace) -> int:
    """``python -m comparisons liberror``: measure and write the table and its page, or (with
    ``--check``) re-measure a tenth of the points against it. Exit 0, or 1 where the table
    understates what the installed frameworks do."""
    show = (lambda what: None) if args.quiet else (lambda what: print(f"  {what}", flush=True))
    if args.check:  # a tenth of the points, against the committed table
        stale = understated(committed_table(), measure(quick=True, on_function=show))
        for line in stale:
            print(f"  understated: {line}")
        print(
            f"{'STALE' if stale else 'CURRENT'}: {TABLE} "
            + ("understates the installed frameworks; regenerate: python -m comparisons liberror"
               if stale else "holds what the installed frameworks do on a tenth of its points")
        )  # fmt: skip
        return 1 if stale else 0
    found = measure_all_variants(on_function=show)
    Path(args.table).write_text(json.dumps(found, indent=1) + "\n", encoding="utf-8")
    Path(args.docs).write_text(render_markdown(found), encoding="utf-8")
    print(f"wrote {args.table} and {args.docs}")
    return 0
