"""The engine contract's widest sweep: two steps of every activation × loss head × optimizer
× dtype, every trace tensor against scratch's, for each reference.

The quick tier runs a covering set in float64 against PyTorch (the optimizer turning with
activation + head, so that every pair of the three meets: 30 cases) and against JAX one case
per loss head (activation and optimizer turning with it: each activation, head and optimizer
once; every JAX case is a compilation, ~0.15 s even from the persistent cache), and three
float32 cases against both. The rest of the product, in both dtypes, is slow-tier.
"""

from __future__ import annotations

import itertools

import pytest

from scratch.activations import ACTIVATIONS
from scratch.config import MLP
from tests.reference.contract import (
    OPTIMIZERS,
    REFERENCES,
    batch,
    label,
    make,
    start,
    steps_agree,
    with_l2,
)
from tests.scratch.cases import LOSS_HEADS

HIDDEN = list(ACTIVATIONS)
# float32 in the quick tier: a few cases (tests/comparisons/test_lockstep.py runs every
# optimizer in float32); the last, a linear network with adamw, is the worst float32 case
# seen over the product.
FLOAT32_QUICK = {
    ("sigmoid", 4, "nesterov"),
    ("relu", 5, "momentum"),
    ("identity", 0, "adamw"),
}


def quick(reference: str, a: int, h: int, o: int, dtype: str, case: tuple) -> bool:
    """Whether the case (activation a, head h, optimizer o) is in the quick tier."""
    if dtype == "float32":
        return case in FLOAT32_QUICK
    turning = o == (a + h) % len(OPTIMIZERS)
    return turning and (reference == "torch" or a == h % len(HIDDEN))


def matrix() -> list:
    """reference × activation × loss head × optimizer × dtype. L2 rides along with every
    optimizer but adamw (which takes decoupled decay) on the odd heads."""
    cases = []
    for reference, (a, hidden), (h, (loss, out, K)), (o, opt), dtype in itertools.product(
        REFERENCES,
        enumerate(HIDDEN),
        enumerate(LOSS_HEADS),
        enumerate(OPTIMIZERS),
        ["float64", "float32"],
    ):
        if h % 2 and opt.name != "adamw":
            opt = with_l2(opt)
        (name,), marks = reference.values, list(reference.marks)
        if not quick(name, a, h, o, dtype, (hidden, h, opt.name)):
            marks.append(pytest.mark.slow)
        cases.append(
            pytest.param(
                name,
                hidden,
                loss,
                out,
                K,
                opt,
                dtype,
                id=f"{hidden}-{loss}-{out}-{label(opt)}-{dtype}-{name}",
                marks=marks,
            )
        )
    return cases


@pytest.mark.parametrize(("reference", "hidden", "loss", "out", "K", "opt", "dtype"), matrix())
def test_two_steps_agree_with_scratch(reference, rng, hidden, loss, out, K, opt, dtype):
    """Lockstep from scratch's zero state, then from the nonzero state it reached."""
    mlp = MLP((4, 6, 5, K), hidden, out, loss)
    engine = make(reference, mlp, opt, dtype)
    params, state = start(mlp, opt, dtype)
    steps_agree(engine, mlp, opt, params, state, [batch(rng, mlp, dtype) for _ in range(2)])


def test_the_quick_tier_meets_every_activation_head_and_optimizer_against_each_reference():
    for name in ("torch", "jax"):
        rows = [
            (a, h, o)
            for a, h, o in itertools.product(
                range(len(HIDDEN)), range(len(LOSS_HEADS)), range(len(OPTIMIZERS))
            )
            if quick(name, a, h, o, "float64", ())
        ]
        for factor, size in enumerate((len(HIDDEN), len(LOSS_HEADS), len(OPTIMIZERS))):
            assert {row[factor] for row in rows} == set(range(size)), (name, factor)
        pairs = {(a, h) for a, h, _ in rows}
        assert name != "torch" or len(pairs) == len(HIDDEN) * len(LOSS_HEADS)
