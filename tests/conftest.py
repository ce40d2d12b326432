"""Shared fixtures: a seeded random generator, and where the real Occupancy files are."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from comparisons.run.engines import jax_environment

pytest_plugins = ["tests.compiles"]  # --jax-compiles: how many programs JAX compiles, where


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, so every test's random data is the same each run."""
    return np.random.default_rng(20161128)


@pytest.fixture(scope="session")
def occupancy_dir() -> Path:
    """The folder named by OCCUPANCY_DATA_DIR.

    On CI (CI=true) its absence fails the test, so that the real-data tests can never be
    skipped there unnoticed; elsewhere they are skipped.
    """
    value = os.environ.get("OCCUPANCY_DATA_DIR")
    if not value:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(
                "CI is set but OCCUPANCY_DATA_DIR is not: point it at the folder holding "
                "datatraining.txt, datatest.txt and datatest2.txt"
            )
        pytest.skip(REALDATA_SKIP)
    return Path(value)


REALDATA_SKIP = "real data: set OCCUPANCY_DATA_DIR to the folder holding the Occupancy files"


def pytest_unconfigure(config: pytest.Config) -> None:
    """After the session's last line (its tally), where some real-data tests were skipped."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not hasattr(config, "workerinput"):  # xdist's workers: no
        realdata_summary(reporter)


def realdata_summary(terminalreporter) -> None:
    """The last lines of a session that skipped the real-data tests: how many, and the
    command that runs them (a skip must not end unnoticed in a green run)."""
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if REALDATA_SKIP in str(r.longrepr)
    ]
    if not skipped:
        return
    terminalreporter.write_sep(
        "=", f"{len(skipped)} real-data tests skipped: OCCUPANCY_DATA_DIR is not set", yellow=True
    )
    for line in realdata_hint():
        terminalreporter.write_line(line)


def realdata_hint() -> list[str]:
    """How to run the real-data tests: with the download cache's folder where it holds the
    files, else how to fill it first."""
    from data.download import cache_dir
    from data.occupancy_constants import FILE_LIST, SPLITS

    folder = cache_dir()
    if all((folder / name).is_file() for name in SPLITS.values()):
        return [f"to run them with the files already downloaded: OCCUPANCY_DATA_DIR={folder} tox"]
    return [
        "to run them: `tox -e report` downloads and verifies the files into "
        f"{folder}; then OCCUPANCY_DATA_DIR={folder} tox",
        f"(offline: OCCUPANCY_DATA_DIR=FOLDER tox, FOLDER holding {FILE_LIST})",
    ]


# Every report.json, faults.json and bench.json the tool writes during the tests, in this
# process or in one a test starts, is checked against the schema shipped in
# comparisons/schemas/ before it is written; one that does not follow it fails its test.
# (The toy reports of the atomic-write tests, which have no schema_version, are not checked.)
os.environ["BACKPROP_ORACLE_VALIDATE"] = "1"

# `run` keeps every engine in the test's own process unless the test asks for workers
# (--jobs): a worker pays PyTorch's import again (~3 s), and the test processes already fill
# the CPUs.
os.environ["BACKPROP_ORACLE_JOBS"] = "1"

# JAX as `run` sets it up: its persistent compilation cache (the tool's user cache), so that a
# test process loads each compiled step from disk instead of compiling it again (~0.5 s a
# configuration), and, on a machine with a GPU, memory taken as needed (not 75% of the card in
# every test process, which ran a GPU out of memory under `pytest -n 16`). Set before JAX is
# imported, so that it holds in every test and every process a test starts, whichever test
# comes first.
for _variable, _value in jax_environment().items():
    os.environ.setdefault(_variable, _value)


# Framework markers: a test marked `torch` or `jax` is skipped where the framework is not
# installed, except where BACKPROP_ORACLE_REQUIRE names it (tox's torch, jax and py envs):
# there a missing framework fails the test instead of skipping it.
FRAMEWORK_MODULES = {"torch": ("torch",), "jax": ("jax", "optax")}


def _missing(framework: str) -> list[str]:
    import importlib.util

    return [m for m in FRAMEWORK_MODULES[framework] if importlib.util.find_spec(m) is None]


@pytest.fixture(autouse=True)
def _figures_where_asked(request, monkeypatch):
    """Drawing a report's figures takes ~0.5 s (matplotlib): the tests of the figures
    (marked ``figures``) and the slow tier draw them; in the quick tier's other tests,
    report.html is written without them (its text and tables as ever)."""
    node = request.node
    if node.get_closest_marker("figures") is None and node.get_closest_marker("slow") is None:
        from comparisons.report import sections

        monkeypatch.setattr(sections, "figures", lambda report: ())


def pytest_runtest_setup(item: pytest.Item) -> None:
    required = set(filter(None, os.environ.get("BACKPROP_ORACLE_REQUIRE", "").split(",")))
    for framework in FRAMEWORK_MODULES:
        if item.get_closest_marker(framework) is None:
            continue
        missing = _missing(framework)
        if not missing:
            continue
        if framework in required:
            pytest.fail(
                f"{', '.join(missing)} not installed, but BACKPROP_ORACLE_REQUIRE names {framework}"
            )
        pytest.skip(f"needs {', '.join(missing)} (pip install '.[{framework}]')")
    if item.get_closest_marker("gpu") is not None and not _has_gpu():
        pytest.skip("needs a CUDA GPU")


def _has_gpu() -> bool:
    if not _missing("torch"):
        import torch

        if torch.cuda.is_available():
            return True
    if not _missing("jax"):
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False
