"""The oracle: scratch in lockstep with PyTorch and JAX, every trace tensor, every step.

The quick tier covers every activation × loss head and every optimizer × dtype × batch size
(including 1 and a partial last batch) against PyTorch (JAX's optimizers and dtypes are the
quick tier's in tests/reference); the full product of all five, and these against JAX, are
marked slow.
"""

from __future__ import annotations

import itertools

import pytest

from comparisons.run.inputs import build_inputs
from comparisons.run.pairwise import pairwise
from comparisons.run.spec import RunSpec
from tests.comparisons.lockstep_cases import (
    ACTIVATIONS,
    BATCH_SIZES,
    HEADS,
    OPTIMIZERS,
    REFERENCES,
    assert_lockstep_agrees,
    head,
    run,
    synthetic_spec,
)

# Against JAX these matrices are slow-tier: each case compiles a step, and the reference
# contract tests (tests/reference) run a covering set of them against JAX in the quick tier.
QUICK_TORCH_SLOW_JAX = [
    pytest.param("torch", marks=pytest.mark.torch, id="torch"),
    pytest.param("jax", marks=[pytest.mark.jax, pytest.mark.slow], id="jax"),
]


@pytest.mark.parametrize("reference", QUICK_TORCH_SLOW_JAX)
@pytest.mark.parametrize(
    ("activation", "heads"),
    [pytest.param(a, h, id=f"{a}-{h[0]}-{h[1]}") for a in ACTIVATIONS for h in HEADS],
)
def test_every_activation_and_loss(reference, activation, heads):
    # The optimizer cycles with the case so that each head also meets several optimizers.
    # Batches of 4 divide the 12 rows: one batch shape, one JAX compilation (the partial
    # last batch is the next test's subject).
    optimizer = OPTIMIZERS[(ACTIVATIONS.index(activation) + HEADS.index(heads)) % len(OPTIMIZERS)]
    spec = synthetic_spec(activation=activation, optimizer=optimizer, batch_size=4, **head(*heads))
    assert_lockstep_agrees(spec, reference)


@pytest.mark.parametrize("reference", QUICK_TORCH_SLOW_JAX)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_every_optimizer_dtype_and_batch_size(reference, optimizer, dtype, batch_size):
    spec = synthetic_spec(
        optimizer=optimizer, dtype=dtype, batch_size=batch_size, activation="tanh"
    )
    assert_lockstep_agrees(spec, reference)


FULL_PRODUCT = [
    pytest.param(a, h, o, d, b, id=f"{a}-{h[0]}-{h[1]}-{o}-{d}-b{b}")
    for a, h, o, d, b in itertools.product(
        ACTIVATIONS, HEADS, OPTIMIZERS, ["float64", "float32"], [1, 5]
    )
]


@pytest.mark.slow
@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize(("activation", "heads", "optimizer", "dtype", "batch_size"), FULL_PRODUCT)
def test_full_product(reference, activation, heads, optimizer, dtype, batch_size):
    assert_matrix_run_agrees(reference, activation, heads, optimizer, dtype, batch_size)


def assert_matrix_run_agrees(reference, activation, heads, optimizer, dtype, batch_size, **more):
    """One run of the lockstep matrix (``more``: further spec keys) agrees with ``reference``."""
    spec = synthetic_spec(
        activation=activation,
        optimizer=optimizer,
        dtype=dtype,
        batch_size=batch_size,
        **head(*heads),
        **more,
    )
    assert_lockstep_agrees(spec, reference)


# The options past the plain MLP (gradient clipping, a learning-rate schedule, dropout, batch
# normalization) enter the full tier as a covering set of the whole product (check's
# construction, comparisons/run/pairwise.py), not as more
# factors of it: every pair of values of any two options (activation, head, optimizer, dtype,
# batch size, clipping, schedule, dropout, batch norm) meets in at least one run, but batch
# normalization with batches of 1 row, which it refuses.
FACTORS = [
    ACTIVATIONS,
    HEADS,
    OPTIMIZERS,
    ["float64", "float32"],
    [1, 5],
    [0.0, 0.3],  # clip_norm
    ["constant", "step", "cosine"],  # lr_schedule (see SCHEDULES)
    [0.0, 0.4],  # dropout
    [False, True],  # batch_norm
]


def feasible(row: tuple) -> bool:
    """Batch normalization needs two rows in a batch."""
    return not (row[8] and row[4] == 1)


SCHEDULES = {
    "constant": {},
    "step": {"lr_step_size": 3, "lr_gamma": 0.5},
    "cosine": {"lr_warmup": 3, "lr_min": 0.001},  # over the run's updates
}
OPTIONS = [
    pytest.param(*row, id="-".join(map(str, (row[0], *row[1][:2], *row[2:]))))
    for row in pairwise(*FACTORS, valid=feasible)
]


@pytest.mark.slow
@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize(
    "activation, heads, optimizer, dtype, batch_size, clip_norm, schedule, dropout, batch_norm",
    OPTIONS,
)
def test_options_covering_set(
    reference,
    activation,
    heads,
    optimizer,
    dtype,
    batch_size,
    clip_norm,
    schedule,
    dropout,
    batch_norm,
):
    args = (reference, activation, heads, optimizer, dtype, batch_size)
    more = {**SCHEDULES[schedule], "clip_norm": clip_norm, "dropout": dropout}
    more["batch_norm"] = batch_norm
    assert_matrix_run_agrees(*args, lr_schedule=schedule, **more)


def test_the_covering_set_covers_every_pair():
    rows = pairwise(*FACTORS, valid=feasible)
    assert all(feasible(r) for r in rows)
    possible = [r for r in itertools.product(*FACTORS) if feasible(r)]
    for i, j in itertools.combinations(range(len(FACTORS)), 2):
        assert {(r[i], r[j]) for r in rows} == {(r[i], r[j]) for r in possible}, (i, j)
    assert len(rows) < 50  # far below the product's 20,736 (at least 36: 6 activations × 6 heads)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("reference", REFERENCES)
def test_the_default_occupancy_run_in_lockstep(occupancy_dir, reference):
    """The whole default training run, 1,630 steps, against each reference."""
    problem = build_inputs(RunSpec(engines=("scratch",)), occupancy_dir)
    result = run(problem, reference)
    assert result.steps_run == len(problem.schedule)
    assert result.agree, result.first_divergence.describe()


@pytest.mark.parametrize("reference", REFERENCES)
def test_lockstep_records_the_worst_error_of_every_tensor(reference):
    problem = build_inputs(synthetic_spec(optimizer="adam"))
    result = run(problem, reference)
    first = result.first_step_traces["scratch"]
    assert set(result.per_tensor[reference].items()) == {"rows", "X", "Y", *first}
    assert all(w.ok and w.step >= 0 for w in result.per_tensor[reference].items().values())
    assert len(result.per_step) == len(problem.schedule)
    assert set(result.per_step[0]["loss"]) == {"scratch", reference}
