"""Every library's thread pool fixed before anything is timed, and what each pool is.

NumPy's BLAS and any OpenMP pool are fixed through threadpoolctl, PyTorch's intra-op pool
with ``torch.set_num_threads``. XLA reads ``XLA_FLAGS`` once, when its backend starts (the
first ``jax.devices()`` or computation, not ``import jax``), and JAX has no public way to
ask whether that has happened: so one thread is asked for in ``XLA_FLAGS`` while the backend
is started here, which is certain to be read only where this process had not imported jax
before. Where it had (a test session, a caller that used JAX), the flag still holds if the
backend had not started yet, and the report says that it may not.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from comparisons.bench.optional import installed, load
from comparisons.oracle.workers import usable_cpus

XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@contextlib.contextmanager
def fixed_threads(threads: int, engines: list[str]) -> Iterator[dict]:
    """Every thread pool fixed at ``threads`` while active (restored after); yields what each
    pool is, for the report. Frameworks are imported here, so that their pools exist."""
    info: dict = {"requested": threads, "usable_cpus": usable_cpus()}
    torch = load("torch", missing_ok=True) if {"torch", "torch.compile"} & set(engines) else None
    xla = xla_threads(threads) if "jax" in engines else None
    before = torch.get_num_threads() if torch else None
    with contextlib.ExitStack() as stack:
        threadpoolctl = load("threadpoolctl", missing_ok=True)
        if threadpoolctl is None:
            info["threadpools"] = "unknown and not fixed (threadpoolctl is not installed)"
        else:
            stack.enter_context(threadpoolctl.threadpool_limits(limits=threads))
            info["threadpools"] = [
                {k: pool.get(k) for k in ("internal_api", "prefix", "version", "num_threads")}
                for pool in threadpoolctl.threadpool_info()
            ]
        if torch:
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, before)
            info["torch_intra_op"] = torch.get_num_threads()
        if xla:
            info["xla"] = xla
        yield info


def xla_threads(threads: int) -> str | None:
    """Start JAX's CPU backend, with one thread if asked; say what its threads are (None:
    JAX is not installed). See the module's docstring for when the flag is certain to hold."""
    imported_before = "jax" in sys.modules
    if not (imported_before or installed("jax")):
        return None
    flags = os.environ.get("XLA_FLAGS")
    if threads != 1:
        if load("jax", missing_ok=True) is None:
            return None
        return f"XLA_FLAGS={flags!r}" if flags else f"one thread per core ({os.cpu_count()})"
    os.environ["XLA_FLAGS"] = f"{flags or ''} {XLA_ONE_THREAD}".strip()
    try:
        jax = load("jax", missing_ok=True)
        if jax is None:
            return None
        jax.devices("cpu")
    finally:  # only this process's backend: not the main job's subprocess
        _restore("XLA_FLAGS", flags)
    if imported_before:
        return (
            f"one thread asked for (XLA_FLAGS={XLA_ONE_THREAD!r}), but jax was imported before "
            f"the bench: not fixed if its backend had already started (XLA_FLAGS={flags!r})"
        )
    return f"one thread (XLA_FLAGS={XLA_ONE_THREAD!r} at startup)"


def _restore(variable: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = value
