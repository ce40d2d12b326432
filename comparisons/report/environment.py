"""The environment fingerprint every report carries: what computed these numbers, and how.

Floating-point results depend on the libraries' versions, the BLAS and its thread count
(summation order), the device and the precision flags (TF32, JAX's matmul precision, the
64-bit switch); a report that disagrees on another machine is read against these.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import numpy as np

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> dict[str, Any]:
    config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    info: dict[str, Any] = {"name": config.get("name"), "version": config.get("version")}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # the reports extra is not installed: say so rather than guess
        info["threadpools"] = []
        info["threadpools_note"] = "unknown: threadpoolctl is not installed"
    else:
        info["threadpools"] = [
            {k: pool.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for pool in threadpool_info()
        ]
    return info


def _torch(engines: list[str]) -> dict[str, Any] | None:
    if "torch" not in engines:
        return None
    import torch

    return {
        "version": str(torch.__version__),  # a str, not torch's TorchVersion subclass of it
        "num_threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }


def _jax(engines: list[str]) -> dict[str, Any] | None:
    if "jax" not in engines:
        return None
    import jax

    return {
        "version": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "optax": _version("optax"),
        "enable_x64": bool(jax.config.jax_enable_x64),
        "default_matmul_precision": jax.config.jax_default_matmul_precision,
        "devices": [str(d) for d in jax.devices()],
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
    }


def fingerprint(engines: list[str], device: str = "cpu", apart=None) -> dict[str, Any]:
    """JSON-ready facts about this process; frameworks only if the run used them, each as
    the process that ran it sees it (``apart``: the references' worker processes)."""
    apart = apart or {}

    def framework(name: str) -> dict[str, Any] | None:
        if name in apart:
            return apart[name].call(framework_facts, name)
        return FRAMEWORKS[name](engines)

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "thread_variables": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        "device": device,
        "numpy": np.__version__,
        "blas": _blas(),
        "torch": framework("torch"),
        "jax": framework("jax"),
    }


FRAMEWORKS = {"torch": _torch, "jax": _jax}


def framework_facts(_engine, name: str) -> dict[str, Any] | None:
    """The framework ``name``'s facts in a reference's worker process (called there)."""
    return FRAMEWORKS[name]([name])
