"""The engine contract's sweeps, each case against both references: two steps of every
activation × loss head × optimizer × dtype (every trace tensor against scratch's), free
running with every optimizer, gradient clipping, the learning-rate schedules, weight decay.

Every JAX case is a compilation (~0.15 s even from the persistent cache; PyTorch's ~10 ms), so
the quick tier runs each sweep whole against PyTorch (as its cases are marked) and a share of
it against JAX that meets every value of every factor at least once; the full tier runs it all.
In the widest, the quick tier's float64 cases against PyTorch are a covering set (the
optimizer turning with activation + head, so that every pair of the three meets: 36 cases),
against JAX two cases per loss head; three float32 cases against both; the rest of the
product, in both dtypes, is slow-tier. The contract's other behaviours, against both
references in the quick tier: ``test_engine_contract.py``.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from scratch.activations import ACTIVATIONS
from scratch.config import MLP
from scratch.training import train_step
from tests.reference.contract import (
    COSINE,
    OPTIMIZERS,
    STEP_DECAY,
    batch,
    both_references,
    label,
    make,
    start,
    steps_agree,
    with_l2,
)
from tests.scratch.cases import LOSS_HEADS

HIDDEN = list(ACTIVATIONS)
# float32 in the quick tier: a few cases (tests/comparisons/oracle/test_lockstep.py runs every
# optimizer in float32); the last, a linear network with adamw, is the worst float32 case
# seen over the product.
FLOAT32_QUICK = {
    ("sigmoid", 4, "nesterov"),
    ("relu", 5, "momentum"),
    ("identity", 0, "adamw"),
}


def covering(reference: str, a: int, h: int, o: int) -> bool:
    """Whether the float64 case (activation a, head h, optimizer o) is in the quick tier."""
    turning = o == (a + h) % len(OPTIMIZERS)
    # JAX: activations h and h + 1 with head h. One row per head cannot meet every optimizer
    # when there are as many (an even number) of each: o = 2h would take even values only.
    jax = a in (h % len(HIDDEN), (h + 1) % len(HIDDEN))
    return turning and (reference == "torch" or jax)


def matrix() -> list:
    """activation × loss head × optimizer × dtype, for each reference. L2 rides along with
    every optimizer but adamw (which takes decoupled decay) on the odd heads."""
    cases, jax_quick = [], set()
    for (a, hidden), (h, (loss, out, K)), (o, opt), dtype in itertools.product(
        enumerate(HIDDEN), enumerate(LOSS_HEADS), enumerate(OPTIMIZERS), ["float64", "float32"]
    ):
        if h % 2 and opt.name != "adamw":
            opt = with_l2(opt)
        if dtype == "float64":
            quick = {r: covering(r, a, h, o) for r in ("torch", "jax")}
        else:
            quick = dict.fromkeys(("torch", "jax"), (hidden, h, opt.name) in FLOAT32_QUICK)
        name = f"{hidden}-{loss}-{out}-{label(opt)}-{dtype}"
        marks = () if quick["torch"] else pytest.mark.slow
        cases.append(pytest.param(hidden, loss, out, K, opt, dtype, id=name, marks=marks))
        if quick["jax"]:
            jax_quick.add(name)
    return both_references(cases, jax_quick)


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
            if covering(name, a, h, o)
        ]
        for factor, size in enumerate((len(HIDDEN), len(LOSS_HEADS), len(OPTIMIZERS))):
            assert {row[factor] for row in rows} == set(range(size)), (name, factor)
        pairs = {(a, h) for a, h, _ in rows}
        assert name != "torch" or len(pairs) == len(HIDDEN) * len(LOSS_HEADS)


@pytest.mark.parametrize(
    ("reference", "opt"),
    both_references(
        [pytest.param(o, id=label(o)) for o in OPTIMIZERS],
        jax_quick={"nesterov", "adamw", "rmsprop"},
    ),
)
def test_free_running_engine_follows_scratchs_own_training(reference, rng, opt):
    """set_state once, then four steps on the engine's own state."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params, state = start(mlp, opt)
    batches = [batch(rng, mlp, "float64") for _ in range(4)]
    steps_agree(make(reference, mlp, opt), mlp, opt, params, state, batches, lockstep=False)


CLIPPED = [
    pytest.param(opt, dtype, threshold, id=f"{name}-{label_}-{dtype}")
    for dtype in ("float64", "float32")
    for opt, label_ in ((with_l2(OPTIMIZERS[1]), "momentum+l2"), (OPTIMIZERS[4], "adamw"))
    for threshold, name in ((0.5, "clipping"), (2.0, "not-clipping"))
]


@pytest.mark.parametrize(
    ("reference", "opt", "dtype", "threshold"),
    both_references(
        CLIPPED, jax_quick={"clipping-adamw-float32", "not-clipping-momentum+l2-float64"}
    ),
)
def test_clipping_by_the_global_norm(reference, rng, opt, dtype, threshold):
    """clip_norm at half, then at twice the first step's gradient norm: the step that clips
    and the one that does not agree with scratch, grad_norm (the norm before clipping) too,
    and decay is added after clipping in every engine."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params, state = start(mlp, opt, dtype)
    X, Y = batch(rng, mlp, dtype)
    trace = train_step(mlp, opt, params, state, X, Y)[0]
    norm = float(np.sqrt(sum(np.sum(trace[f"d{p}"].astype(np.float64) ** 2) for p in params)))
    clipping = dataclasses.replace(opt, clip_norm=threshold * norm)
    engine = make(reference, mlp, clipping, dtype)
    batches = [(X, Y)] + [batch(rng, mlp, dtype) for _ in range(2)]
    steps_agree(engine, mlp, clipping, params, state, batches)


SCHEDULED = [
    pytest.param(dataclasses.replace(OPTIMIZERS[o], **schedule), dtype, id=f"{name}-{dtype}")
    for dtype in ("float64", "float32")
    for o, schedule, name in (
        (2, STEP_DECAY, "nesterov-step"),
        (4, STEP_DECAY, "adamw-step"),
        (1, COSINE, "momentum-cosine"),
        (3, COSINE, "adam-cosine"),
        (5, STEP_DECAY, "rmsprop-step"),
    )
]


@pytest.mark.parametrize(
    ("reference", "opt", "dtype"),
    both_references(SCHEDULED, jax_quick={"nesterov-step-float64", "adam-cosine-float32"}),
)
def test_a_schedule_in_lockstep_and_free_running(reference, rng, opt, dtype):
    """Five updates across two decays (step) or the warm-up's end (cosine): the lr of each (a
    trace tensor) and every update agree with scratch, loaded before every step and running
    free on the engine's own state."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params, state = start(mlp, opt, dtype)
    batches = [batch(rng, mlp, dtype) for _ in range(5)]
    for lockstep in (True, False):
        engine = make(reference, mlp, opt, dtype)
        steps_agree(engine, mlp, opt, params, state, batches, lockstep=lockstep)


# Each decayed optimizer, and how much further its first step moves W than the same step
# without decay (None where there is no closed form: Adam normalizes the L2 gradient).
DECAYED = [
    pytest.param(with_l2(OPTIMIZERS[0]), 1.0, id="sgd+l2"),
    pytest.param(with_l2(OPTIMIZERS[1]), 1.0, id="momentum+l2"),
    pytest.param(with_l2(OPTIMIZERS[2]), 1.0 + OPTIMIZERS[2].momentum, id="nesterov+l2"),
    pytest.param(with_l2(OPTIMIZERS[3]), None, id="adam+l2"),
    pytest.param(OPTIMIZERS[4], 1.0, id="adamw"),
    pytest.param(with_l2(OPTIMIZERS[5]), None, id="rmsprop+l2"),
]


@pytest.mark.parametrize(
    ("reference", "decayed", "factor"),
    both_references(DECAYED, jax_quick={"nesterov+l2", "adam+l2", "adamw", "rmsprop+l2"}),
)
def test_weight_decay_touches_weights_only(reference, rng, decayed, factor):
    """The same first step with and without decay: every bias moves bit for bit the same,
    the weights differently (by factor·lr·λ·W more, where that has a closed form)."""
    mlp = MLP((4, 6, 5, 2), "tanh", "identity", "mse")
    plain = dataclasses.replace(
        decayed, name="adam" if decayed.name == "adamw" else decayed.name, l2=0.0, weight_decay=0.0
    )
    decay = decayed.l2 or decayed.weight_decay
    params, _ = start(mlp, plain)
    X, Y = batch(rng, mlp, "float64")
    traces = []
    for opt in (decayed, plain):
        engine = make(reference, mlp, opt)
        engine.set_state(*start(mlp, opt))
        traces.append(engine.step(X, Y))
    with_decay, without = traces
    for l in (1, 2, 3):
        np.testing.assert_array_equal(with_decay[f"Δb{l}"], without[f"Δb{l}"])
        assert np.any(with_decay[f"ΔW{l}"] != without[f"ΔW{l}"]), f"ΔW{l}"
        if factor is not None:
            # Exact in real arithmetic; the 1e-9 is float64 rounding of two separate steps.
            np.testing.assert_allclose(
                with_decay[f"ΔW{l}"] - without[f"ΔW{l}"],
                -factor * decayed.lr * decay * params[f"W{l}"],
                rtol=1e-9,
                err_msg=f"ΔW{l}",
            )


@pytest.mark.parametrize(
    ("reference", "dtype"),
    both_references(
        [pytest.param(d, id=d) for d in ("float64", "float32")], jax_quick={"float64", "float32"}
    ),
)
def test_elu_far_below_zero_agrees(reference, rng, dtype):
    """Weights × 20 put many units of an ELU network far below 0, where g' = e^Z is tiny and
    JAX's autodiff takes it as A + 1 (A ≈ -1: none of e^Z's digits, 0 in float32) while
    scratch and PyTorch take e^Z: the allowance of g' must hold A's error (e^Z·E_Z and the
    library's ulps) and that sum's rounding, or every engine is blamed for honest roundoff."""
    mlp = MLP((4, 6, 5, 2), "elu", "elu", "mse")
    opt = OPTIMIZERS[0]
    params, state = start(mlp, opt, dtype)
    params = {p: (v * 20).astype(dtype) for p, v in params.items()}
    engine = make(reference, mlp, opt, dtype)
    steps_agree(engine, mlp, opt, params, state, [batch(rng, mlp, dtype) for _ in range(2)])
