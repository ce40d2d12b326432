"""Step time and the machine's limit: each engine's bare training step, timed, and the
step's matrix products alone (their FLOPs and their own time, the bound)."""

from __future__ import annotations

import contextlib
import functools
import gc
import statistics
import time
from collections.abc import Callable, Iterator

import numpy as np

from comparisons.bench.optional import load
from comparisons.bench.settings import ACTIVATION, LOSS, OPTIMIZER, PEAK_N, Size
from comparisons.run.engines import framework_device
from scratch.config import MLP, Optimizer
from scratch.initializers import init_params
from scratch.optimizers import init_state
from scratch.trace_schema import param_names, parse
from scratch.training import train_step


class ScratchStep:
    """scratch's training step, exactly as the scratch engine takes it."""

    def __init__(self, mlp: MLP, opt: Optimizer, params: dict, dtype: str):
        self.mlp, self.opt = mlp, opt
        self.params, self.state = params, init_state(opt, params)

    def batch(self, X: np.ndarray, Y: np.ndarray):
        return X, Y

    def __call__(self, batch) -> None:
        _, self.params, self.state = train_step(self.mlp, self.opt, self.params, self.state, *batch)


class TorchStep:
    """The PyTorch reference's model, loss and optimizer (``reference.torch_mlp``), without
    its trace: zero_grad, forward, loss, backward, ``optimizer.step()``; ``compile`` puts
    forward and loss (and so the backward) through ``torch.compile``. On a GPU the step
    ends by waiting for the device, so that its time is the work's, not the launches'."""

    def __init__(
        self,
        mlp: MLP,
        opt: Optimizer,
        params: dict,
        dtype: str,
        compile: bool = False,
        device: str = "cpu",
    ):
        self.torch = torch = load("torch")
        torch_mlp, torch_engine = load("reference.torch_mlp"), load("reference.torch_engine")
        torch_dtype = torch_engine.DTYPES[dtype]
        self.device = torch_engine.torch_device(framework_device("torch", device))
        self.model = torch_mlp.make_model(mlp, torch_dtype, self.device)
        with torch.no_grad():  # scratch's weights, in nn.Linear's layout
            for name, tensor in torch_mlp.named_parameters(self.model).items():
                tensor.copy_(torch_engine.to_torch(name, params[name], torch_dtype, self.device))
        self.loss_fn = torch_mlp.LOSSES[mlp.loss]()
        self.optimizer = torch_mlp.make_optimizer(opt, self.model)
        self.loss = torch.compile(self._loss) if compile else self._loss
        self._wait = torch.cuda.synchronize if self.device.type == "cuda" else lambda: None

    def _loss(self, X, Y):
        return self.loss_fn(self.model(X), Y)

    def batch(self, X: np.ndarray, Y: np.ndarray):
        return tuple(self.torch.tensor(a, device=self.device) for a in (X, Y))

    def __call__(self, batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss(*batch).backward()
        self.optimizer.step()
        self._wait()


class JaxStep:
    """The JAX reference's forward pass and loss, ``jax.value_and_grad`` and its optax
    update, without the trace (no error terms, no Δ): the whole step in one ``jax.jit``."""

    def __init__(self, mlp: MLP, opt: Optimizer, params: dict, dtype: str, device: str = "cpu"):
        self.jax = jax = load("jax")
        optax = load("optax")
        jax_mlp, jax_engine = load("reference.jax_mlp"), load("reference.jax_engine")
        # as the engine does: 64-bit mode on for float64, the device checked
        self.device = jax_engine.JaxEngine(mlp, opt, dtype, device).device
        weights_only = {p: parse(p).decays for p in param_names(mlp.n_layers)}
        tx = jax_mlp.make_optimizer(opt, weights_only)
        loss_of = jax_mlp.LOSSES[mlp.loss]

        def step(params, opt_state, X, Y):
            def loss(params):
                return loss_of(jax_mlp.forward(mlp, params, X)[f"A{mlp.n_layers}"], Y)

            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value

        self._step = jax.jit(step)
        self.params = jax.device_put(params, self.device)
        self.opt_state = tx.init(self.params)

    def batch(self, X: np.ndarray, Y: np.ndarray):
        return self.jax.device_put(X, self.device), self.jax.device_put(Y, self.device)

    def __call__(self, batch) -> None:
        self.params, self.opt_state, loss = self._step(self.params, self.opt_state, *batch)
        loss.block_until_ready()  # one executable: every output is ready with the loss


def bare_step(engine: str, mlp: MLP, opt: Optimizer, params: dict, dtype: str, device: str = "cpu"):
    """The bare training step of ``engine``, starting from ``params``; a reference's on
    ``device`` ("cpu" or "gpu"), scratch's always on the CPU."""
    if engine == "scratch":
        return ScratchStep(mlp, opt, params, dtype)
    if engine in ("torch", "torch.compile"):
        return TorchStep(mlp, opt, params, dtype, engine == "torch.compile", device)
    return JaxStep(mlp, opt, params, dtype, device)


def timed(steps: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, dict]:
    """Median, min and max seconds of each step over ``repeats`` rounds, after ``warmup``.

    A round takes every step once, in turn, so that a change in the machine's load (another
    process) touches every step alike and their ratios stay fair.
    """
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    with gc_off():
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
def gc_off() -> Iterator[None]:
    """The garbage collector off while timing (as ``timeit`` does), after a collection."""
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


def peak(dtype: str, n: int = PEAK_N, repeats: int = 5) -> dict:
    """The machine's peak for ``dtype``: one large square product ``(n×n) @ (n×n)``, where the
    BLAS spends nearly all its time in its inner kernel, on the threads the bench fixed."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    (t,) = timed({"peak": lambda: a @ b}, warmup=1, repeats=repeats).values()
    return {"n": n, "flops": 2 * n**3, **t, "gflops": 2 * n**3 / t["median_s"] / 1e9}


def time_size(
    size: Size,
    dtype: str,
    engines: list[str],
    peak_gflops: float | None = None,
    device: str = "cpu",
) -> dict:
    """Every engine's bare step at one size and dtype, and the bare matmuls, timed in turn;
    with ``peak_gflops``, each one's GFLOP/s as a fraction of the machine's (CPU's) peak too;
    the references' steps on ``device``."""
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
        results[engine], step = _first_step(engine, mlp, params, dtype, X, Y, device)
        if step is not None:
            steps[engine] = step
    times = timed(steps, warmup=max(2, size.repeats // 10), repeats=size.repeats)
    for name, t in times.items():
        t["gflops"] = flops / t["median_s"] / 1e9
        if peak_gflops and (device == "cpu" or name in ("scratch", "matmuls")):
            t["peak_fraction"] = t["gflops"] / peak_gflops
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


def _first_step(engine: str, mlp: MLP, params: dict, dtype: str, X, Y, device: str):
    """``engine``'s bare step made and taken once (for torch.compile and jax, the compilation):
    its result so far and the step to time, or why it is unavailable and None."""
    started = time.perf_counter()
    try:
        step = bare_step(engine, mlp, OPTIMIZER, params, dtype, device)
        batch = step.batch(X, Y)
        step(batch)
    except ImportError as err:
        return {"unavailable": f"not installed: {err.name or err}"}, None
    except Exception as err:  # torch.compile can fail in many ways: say how, go on
        first_line = (str(err).strip().splitlines() or [""])[0]
        return {"unavailable": f"{type(err).__name__}: {first_line}"[:300]}, None
    return {"first_step_s": time.perf_counter() - started}, functools.partial(step, batch)
