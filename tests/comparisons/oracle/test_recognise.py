"""What a disagreement looks like: an engine that follows another documented convention is
told so ("this matches the <convention> difference: see …"), and one whose formula loses
precision is told that, apart from a wrong equation. The engines here are scratch with one
deliberate change each: the catalogue's convention faults, and a few more."""

from __future__ import annotations

import numpy as np
import pytest

import scratch.activations
import scratch.losses
from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.faults.patching import edit
from comparisons.modes.check import run_check
from comparisons.oracle.compare import compare
from comparisons.oracle.divergence import Divergence, DivergentStep
from comparisons.oracle.recognise import CONVENTIONS, recognise
from comparisons.run.coverage import CASES, Case
from comparisons.run.inputs import build_inputs
from tests.comparisons.lockstep_cases import skip_unless_sound

SATURATED = next(c for c in CASES if c.name == "leaky_relu-bce-adam-l2-saturated")


@pytest.fixture(scope="module")
def sound_scratch():
    skip_unless_sound(run_check(("torch",), cases=(SATURATED,))["verdict"] == "agree")


def checked(patch, cases=None) -> dict:
    """check against PyTorch, to the first failing case, with scratch changed by ``patch``."""
    with np.errstate(all="ignore"), patch():
        report = run_check(("torch",), cases=cases, until_first_failure=True)
    assert report["verdict"] == "disagree", report["verdict"]
    return report


@pytest.mark.torch
@pytest.mark.parametrize(
    ("fault", "convention"),
    [
        ("bn-running-variance-biased", "batch norm running variance"),
        ("bn-running-momentum-swapped", "batch norm momentum"),
        ("dropout-not-inverted", "dropout scaling"),
        ("dropout-divides-by-rate", "dropout scaling"),
        ("schedule-one-step-late", "schedule counting"),
    ],
)
def test_an_engine_on_another_documented_convention_is_told_which(sound_scratch, fault, convention):
    report = checked(FAULTS_BY_NAME[fault].patch)
    arbitration = report["arbitration"]
    assert arbitration["convention"] == convention
    assert (
        f"this matches the {convention} difference: see {CONVENTIONS}"
        in (arbitration["explanation"])
    )


@pytest.mark.torch
def test_an_engine_without_bces_gradient_floor_is_told_so(sound_scratch):
    """dZ3 without PyTorch's floor of A(1 - A) (1.5e-74 against 1.2e-135 at step 0)."""
    no_floor = edit(
        scratch.losses,
        "bce",
        "np.maximum(A * (1.0 - A), 1e-12)",
        "np.where(A * (1.0 - A) > 0, A * (1.0 - A), 1e-12)",
    )
    report = checked(no_floor, (SATURATED,))
    assert report["first_divergence"]["tensor"] == "dZ3"
    assert report["arbitration"]["convention"] == "BCE gradient floor"
    assert "this matches the BCE gradient floor difference" in report["arbitration"]["explanation"]


@pytest.mark.torch
@pytest.mark.parametrize(
    "fault", ["tanh-derivative-form", "leaky-relu-derivative-slope", "sigmoid-derivative-sign"]
)
def test_a_wrong_equation_is_neither_a_convention_nor_a_loss_of_precision(sound_scratch, fault):
    arbitration = checked(FAULTS_BY_NAME[fault].patch)["arbitration"]
    assert "convention" not in arbitration and "precision" not in arbitration
    assert "matches" not in arbitration["explanation"]
    assert "precision" not in arbitration["explanation"]


@pytest.mark.torch
def test_a_sigmoid_that_cancels_is_a_loss_of_precision_not_a_wrong_equation(sound_scratch):
    """½(1 + tanh(z/2)) is the sigmoid, but near 0 it keeps only an ulp of 1.0: the output
    of a saturated unit, 7.6e-74, becomes 0."""
    via_tanh = edit(
        scratch.activations,
        "sigmoid",
        "return np.where(Z >= 0, 1.0, E) / (1.0 + E)",
        "return 0.5 * (1.0 + np.tanh(Z / 2))",
    )
    report = checked(via_tanh, (SATURATED,))
    d, arbitration = report["first_divergence"], report["arbitration"]
    assert d["tensor"] == "A3"
    precision = arbitration["precision"]
    assert precision["ulps_of_scale"] <= 4 and precision["ulps_of_value"] >= 1e3
    assert "a loss of precision in the engine's formula" in arbitration["explanation"]
    assert "convention" not in arbitration


def kink_step(activation: str, slope_at_zero: float, off_the_kink: float = 1.0):
    """A step whose layer-2 pre-activation is exactly 0 in some entries, the references'
    dZ2 there with this project's slope, and an engine's with ``slope_at_zero`` (and one
    entry off the kink scaled by ``off_the_kink``)."""
    inputs = build_inputs(Case("kink", {"activation": activation}).spec(()))
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(5, 4))
    Z[[0, 3], :] = 0.0  # rows whose inputs dropout dropped: Z = b = 0
    dA = rng.normal(size=(5, 4))
    ours_slope = {"relu": 0.0, "leaky_relu": 0.01}[activation]
    slope = np.where(Z > 0, 1.0, np.where(Z < 0, ours_slope, ours_slope))
    theirs = {"Z2": Z, "dZ2": dA * slope}
    engine = dA * np.where(Z == 0, slope_at_zero, slope)
    engine[1, 1] *= off_the_kink
    at = DivergentStep({}, {}, np.zeros((5, 4)), np.zeros((5, 1)), {})
    at.traces = {"scratch": {"dZ2": engine}, "torch": theirs}
    c = compare("dZ2", engine, theirs["dZ2"], "torch", 1e-12)
    return inputs, Divergence(0, 0, 0, c, []), at


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_a_derivative_of_1_at_the_kink_is_the_kink_convention(activation):
    seen = recognise(*kink_step(activation, 1.0))
    assert seen["convention"] == "derivative at a kink"
    assert f"see {CONVENTIONS} ('leaky ReLU at Z = 0')" in seen["note"]
    assert "convention" not in recognise(*kink_step(activation, 1.0, off_the_kink=2.0))
    if activation == "leaky_relu":  # a slope of its own at Z = 0 is no convention
        assert "convention" not in recognise(*kink_step(activation, 7.0))


def test_every_convention_named_is_a_row_of_the_conventions_table():
    from pathlib import Path

    from comparisons.oracle.recognise import ROWS

    page, anchor = CONVENTIONS.split("#")
    text = Path(__file__).parents[3].joinpath(page).read_text()
    assert f"## {anchor.capitalize()}" in text
    for row in ROWS.values():
        assert f"\n| {row} |" in text, row
