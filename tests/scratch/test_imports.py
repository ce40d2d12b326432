"""scratch/ is the textbook: it may import NumPy and the standard library, nothing else."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import scratch

SCRATCH = Path(scratch.__file__).parent


def imported_top_level_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_scratch_imports_only_numpy_and_the_standard_library():
    allowed = {"numpy", "scratch", *sys.stdlib_module_names}
    for path in sorted(SCRATCH.glob("*.py")):
        assert imported_top_level_modules(path) <= allowed, path.name


def test_importing_scratch_loads_no_framework():
    code = (
        "import sys, scratch; "
        "print(sorted(m for m in ('torch', 'jax', 'pandas', 'optax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
