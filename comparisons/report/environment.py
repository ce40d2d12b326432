"""The environment fingerprint every report carries: what computed these numbers, and how.

Floating-point results depend on the libraries' versions, the BLAS and its thread count
(summation order), the device and the precision flags (TF32, JAX's matmul precision, the
64-bit switch); a report that disagrees on another machine is read against these.
"""

from __future__ import annotations

import os
import platform
import re
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
# Variables that choose which CPU kernels the libraries run (so which rounding): PyTorch's
# vectorized kernels, oneDNN's and MKL's instruction sets and MKL's reproducibility mode.
KERNEL_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
    "MKL_DEBUG_CPU_TYPE",
    "OPENBLAS_CORETYPE",
    "XLA_FLAGS",
)
# The instruction-set extensions that select kernels (what /proc/cpuinfo's flags say).
ISA_FLAGS = re.compile(r"^(sse4_2|avx\w*|fma|f16c|amx\w*)$")


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


def _cpu_flags() -> list[str]:
    """The CPU's instruction-set extensions that libraries pick kernels by (x86: SSE4.2, AVX,
    AVX2, AVX-512, FMA, AMX), from /proc/cpuinfo; empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line.split(":", 1)[1].split()
                    return sorted({x for x in flags if ISA_FLAGS.match(x)})
    except OSError:
        pass
    return []


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
        # which vectorized kernels it runs here, and the BLAS and oneDNN it was built with
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "libraries": _torch_libraries(torch.__config__.show()),
    }


def _torch_libraries(config: str) -> list[str]:
    """The math libraries of PyTorch's build (MKL, oneDNN with their versions), as its
    configuration text names them."""
    found = re.findall(r"(Math Kernel Library Version [^\n]*|MKL-DNN v[^ \n]*)", config)
    return [line.strip() for line in found]


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


def fingerprint(engines: list[str], device: str = "cpu", workers=None) -> dict[str, Any]:
    """JSON-ready facts about this process; frameworks only if the run used them, each as
    the process that ran it sees it (``workers``: the references' worker processes)."""
    workers = workers or {}

    def framework(name: str) -> dict[str, Any] | None:
        if name in workers:
            return workers[name].call(framework_facts, name)
        return FRAMEWORKS[name](engines)

    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "thread_variables": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        "kernel_variables": {v: os.environ.get(v) for v in KERNEL_VARIABLES},
        "device": device,
        "numpy": np.__version__,
        "blas": _blas(),
        "torch": framework("torch"),
        "jax": framework("jax"),
    }


FRAMEWORKS = {"torch": _torch, "jax": _jax}

# What decides the bits of a float result, beside the code: the CPU and its instruction
# sets, the kernel-selecting variables, the libraries and their versions and thread counts.
# Two environments equal in these compute the same bits (under the pins); any difference,
# and results agree only to their roundoff.
NUMERICS = ("machine", "cpu", "cpu_flags", "kernel_variables", "thread_variables", "numpy", "blas")
NUMERICS_FRAMEWORK = {
    "torch": ("version", "num_threads", "cpu_capability", "libraries", "float32_matmul_precision"),
    "jax": ("version", "jaxlib", "default_matmul_precision"),
}


def numerics(environment: dict[str, Any]) -> dict[str, Any]:
    """The part of a ``fingerprint`` that decides the bits of float results (``NUMERICS``);
    a key an older fingerprint lacks reads as None, so it never matches a newer one."""
    out = {k: environment.get(k) for k in NUMERICS}
    blas = out["blas"]
    if isinstance(blas, dict):  # NumPy's own BLAS: the pools of other libraries loaded by
        pools = blas.get("threadpools") or []  # then (PyTorch's MKL, OpenMP) come and go
        own = [p for p in pools if str(p.get("internal_api")) in str(blas.get("name"))]
        out["blas"] = {"name": blas.get("name"), "version": blas.get("version"), "pools": own}
    for name, keys in NUMERICS_FRAMEWORK.items():
        facts = environment.get(name)
        out[name] = {k: facts.get(k) for k in keys} if isinstance(facts, dict) else facts
    return out


def framework_facts(_engine, name: str) -> dict[str, Any] | None:
    """The framework ``name``'s facts in a reference's worker process (called there)."""
    return FRAMEWORKS[name]([name])
