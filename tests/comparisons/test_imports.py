"""The command line pays for what a command uses: --help and a scratch-only run import no
framework, and no plotting stack or pandas until a report or the Occupancy files need them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

HEAVY = ("torch", "jax", "optax", "matplotlib", "pandas")


def imported_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])


def test_the_command_line_module_imports_nothing_heavy():
    assert imported_after("import comparisons.cli") == []


def test_a_scratch_only_synthetic_run_imports_no_framework_and_no_pandas(tmp_path):
    run = (
        "from comparisons.cli import main\n"
        f"main(['gradcheck', '--set', 'dataset=synthetic', '--set', 'epochs=1', "
        f"'--engines', 'scratch', '--out', {str(tmp_path / 'g')!r}, '--quiet'])"
    )
    # the HTML report draws its plots with matplotlib, where it is installed
    plotting = ["matplotlib"] if importlib.util.find_spec("matplotlib") else []
    assert imported_after(run) == plotting
