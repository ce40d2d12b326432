"""Shared fixtures: a seeded random generator, and where the real Occupancy files are."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


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
                "datatraining.txt, datatest.txt and datatest2.txt (shared/data/occupancy)"
            )
        pytest.skip("real data: set OCCUPANCY_DATA_DIR to the folder holding the Occupancy files")
    return Path(value)
