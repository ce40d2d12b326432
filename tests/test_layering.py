"""The architecture as a test: who may import whom (tests/layering.py states the rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layering import violations

ROOT = Path(__file__).resolve().parent.parent


def test_the_project_keeps_every_import_rule():
    from tests.layering import sources

    modules, packages = sources(ROOT)
    assert violations(modules, packages) == []


# Each deliberate violation, added to a tiny project that keeps the rules, must be reported.
SOUND = {
    "scratch.network": "import numpy as np\nfrom scratch import activations\n",
    "scratch.activations": "import math\nimport numpy\n",
    "data.occupancy": "import pandas\nimport pooch\n",
    "reference.torch_engine": "import torch\nfrom scratch.config import MLP\n",
    "comparisons.run.spec": "from scratch.config import Optimizer\n",
    "comparisons.oracle.lockstep": "from comparisons.run.spec import RunSpec\n",
    "comparisons.report.content": "from comparisons.oracle import lockstep\n",
    "comparisons.cli": "from comparisons.report import content\nimport data\n",
    "scratch.config": "",
}
BROKEN = [
    ("scratch.network", "import torch\n", "scratch may not import torch"),
    ("scratch.network", "def f():\n    import pandas\n", "scratch may not import pandas"),
    ("scratch.network", "from comparisons.cli import main\n", "scratch may not import comparisons"),
    ("data.occupancy", "from scratch.network import forward\n", "data may not import scratch"),
    ("reference.torch_engine", "from comparisons.run import spec\n", "reference may not import"),
    (
        "comparisons.run.spec",
        "def f():\n    from comparisons.report.content import x\n",
        "comparisons.run may not import the room above it, comparisons.report",
    ),
    (
        "comparisons.oracle.lockstep",
        "from comparisons.oracle.compare import c\n",
        "import cycle",
    ),
]


def test_sound_modules_have_no_violation():
    assert violations(SOUND) == []


@pytest.mark.parametrize(("module", "extra", "message"), BROKEN, ids=[b[2] for b in BROKEN])
def test_each_deliberate_violation_is_reported(module, extra, message):
    modules = dict(SOUND)
    modules[module] += extra
    if message == "import cycle":  # compare imports lockstep back: lockstep -> compare -> it
        modules["comparisons.oracle.compare"] = "from comparisons.oracle import lockstep\n"
    found = violations(modules)
    assert any(message in line for line in found), found
