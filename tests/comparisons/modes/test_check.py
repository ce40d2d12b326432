"""check, the command to run after changing scratch: its cases hold every pair of option
values the run spec allows, and the conditions of the classic bugs; it agrees on sound
scratch, and it fails on every fault of the catalogue, naming the tensor the fault first
changes and the function it breaks."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

import scratch.losses
import scratch.network
import scratch.optimizers
import scratch.training
from comparisons import cli
from comparisons.faults.catalogue import FAULTS
from comparisons.faults.patching import edit
from comparisons.modes.check import run_check
from comparisons.oracle.compare import compare_traces
from comparisons.oracle.roundoff import RoundoffStep, allowances
from comparisons.run.coverage import CASES, DRIFT_CASES
from comparisons.run.engines import ScratchEngine, initial_state
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import DTYPES
from scratch.activations import ACTIVATIONS
from scratch.config import LR_SCHEDULES, MLP
from scratch.losses import LOSSES
from scratch.trace_schema import OPTIMIZER_STATE
from scratch.training import train_step
from tests.comparisons.lockstep_cases import skip_unless_sound
from tests.tiers import every

SPECS = [case.spec(()) for case in CASES]


def covered(predicate) -> bool:
    return any(predicate(spec) for spec in SPECS)


def option_values(spec) -> dict:
    """A spec's value of each option the covering set pairs, read back from the spec itself
    (not from the rows it was built from)."""
    opt = spec.optimizer
    rows = spec.synthetic_rows
    batching = (
        "batch1"
        if spec.batch_size == 1
        else "drop_last"
        if spec.drop_last and rows % spec.batch_size
        else "partial_last_batch"
        if rows % spec.batch_size
        else "whole batches"
    )
    return {
        "activation": spec.activation,
        "output": spec.output,
        "loss": spec.loss,
        "optimizer": opt.name,
        "l2": opt.l2 > 0,
        "weight_decay": opt.weight_decay > 0,
        "clip_norm": opt.clip_norm > 0,
        "lr_schedule": opt.lr_schedule,
        "dropout": spec.dropout > 0,
        "batch_norm": spec.batch_norm,
        "dtype": spec.dtype,
        "batching": batching,
        "shuffle": spec.shuffle,
        "classes": spec.synthetic_classes,
    }


# Every value each option can take, from the spec's own lists: a value added there (a new
# activation, loss, optimizer or schedule) must be paired with every other option's values.
OPTION_VALUES = {
    "activation": tuple(ACTIVATIONS),
    "output": tuple(ACTIVATIONS),
    "loss": tuple(LOSSES),
    "optimizer": tuple(OPTIMIZER_STATE),
    "l2": (False, True),
    "weight_decay": (False, True),
    "clip_norm": (False, True),
    "lr_schedule": LR_SCHEDULES,
    "dropout": (False, True),
    "batch_norm": (False, True),
    "dtype": DTYPES,
    "batching": ("batch1", "drop_last", "partial_last_batch"),
    "shuffle": (False, True),
    "classes": (2, 3),
}


def test_every_pair_of_option_values_the_spec_allows_is_in_a_case():
    """Every pair of values of any two options meets in some case of check, unless the run
    spec refuses every run with it; the refused pairs are the spec's own refusals (each
    tried by building the pair into a valid spec with the spec's validation)."""
    held = {}
    for case in CASES:
        values = option_values(case.spec(()))
        for (a, x), (b, y) in itertools.combinations(values.items(), 2):
            held[(a, x, b, y)] = case.name
    missing = [
        (a, x, b, y)
        for a, b in itertools.combinations(OPTION_VALUES, 2)
        for x in OPTION_VALUES[a]
        for y in OPTION_VALUES[b]
        if (a, x, b, y) not in held
    ]
    refused = {m for m in missing if refused_by_the_spec(*m)}
    assert set(missing) == refused, sorted(set(missing) - refused)
    # The spec's refusals, read from its rules: losses whose output layer is fixed, L2 with
    # adamw, decoupled decay with any other optimizer, batch normalization with 1-row batches.
    assert ("batch_norm", True, "batching", "batch1") in refused
    assert ("optimizer", "adamw", "l2", True) in refused
    assert all(a != "activation" for a, *_ in refused)  # a hidden activation fits anything


def refused_by_the_spec(a, x, b, y) -> bool:
    """Whether no spec on check's problem holds option a at x and b at y: tried over every
    combination of the options that the spec's rules tie to these (output, loss, optimizer,
    L2, decay, batch size), the others left at a valid case's values."""
    from comparisons.run.inputs import schedule_for
    from comparisons.run.spec import SpecError

    base = CASES[0].spec(())
    tried = itertools.product(
        ACTIVATIONS, LOSSES, OPTIMIZER_STATE, (0.0, 0.01), (0.0, 0.05), (1, 5)
    )
    seen = set()
    for output, loss, optimizer, l2, decay, batch_size in tried:
        changes = {
            "output": output, "loss": loss, "optimizer": optimizer, "l2": l2,
            "weight_decay": decay, "batch_size": batch_size,
        }  # fmt: skip
        for option, value in ((a, x), (b, y)):
            changes.update(SETTING[option](value))
        if tuple(changes.items()) in seen:
            continue
        seen.add(tuple(changes.items()))
        try:
            spec = base.replace(**changes)
            schedule_for(spec, spec.synthetic_rows)
        except SpecError:
            continue
        if option_values(spec)[a] == x and option_values(spec)[b] == y:
            return False
    return True


SETTING = {
    "activation": lambda v: {"activation": v},
    "output": lambda v: {"output": v},
    "loss": lambda v: {"loss": v},
    "optimizer": lambda v: {"optimizer": v},
    "l2": lambda v: {"l2": 0.01 * v},
    "weight_decay": lambda v: {"weight_decay": 0.05 * v},
    "clip_norm": lambda v: {"clip_norm": 0.5 * v},
    "lr_schedule": lambda v: {"lr_schedule": v},
    "dropout": lambda v: {"dropout": 0.3 * v},
    "batch_norm": lambda v: {"batch_norm": v},
    "dtype": lambda v: {"dtype": v},
    "batching": lambda v: {
        "batch1": {"batch_size": 1},
        "drop_last": {"batch_size": 5, "drop_last": True},
        "partial_last_batch": {"batch_size": 5, "drop_last": False},
    }[v],
    "shuffle": lambda v: {"shuffle": v},
    "classes": lambda v: {"synthetic_classes": v},
}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_runs_in_a_hidden_layer_and_in_the_output_layer(activation):
    assert covered(lambda s: s.hidden and s.activation == activation)
    assert covered(lambda s: s.output == activation)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_head_runs(loss):
    assert covered(lambda s: s.loss == loss)


@pytest.mark.parametrize(
    ("optimizer", "decay"), list(itertools.product(OPTIMIZER_STATE, (False, True)))
)
def test_every_optimizer_runs_with_and_without_its_weight_decay(optimizer, decay):
    def decayed(s):
        return bool(s.optimizer.weight_decay if optimizer == "adamw" else s.optimizer.l2)

    assert covered(lambda s: s.optimizer.name == optimizer and decayed(s) == decay)


@pytest.mark.parametrize(
    "condition",
    [
        lambda s: s.dtype == "float64",
        lambda s: s.dtype == "float32",
        lambda s: s.batch_size == 1,
        lambda s: s.synthetic_rows % s.batch_size and not s.drop_last,  # a partial last batch
        lambda s: s.drop_last and s.synthetic_rows % s.batch_size,
        lambda s: not s.shuffle,
        lambda s: s.n_outputs > 1,
        lambda s: len(s.hidden) == 0,  # depth 1
        lambda s: len(s.hidden) >= 2,  # depth >= 3
    ],
    ids=[
        "float64", "float32", "batch-1", "partial-last-batch", "drop-last", "no-shuffle",
        "several-outputs", "depth-1", "depth-3-or-more",
    ],
)  # fmt: skip
def test_the_cases_cover_every_batch_shape_dtype_and_depth(condition):
    assert covered(condition)


def scratch_run(case) -> tuple:
    """The case's inputs and sound scratch's trace of each of its steps."""
    inputs = build_inputs(case.spec(()))
    engine = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    engine.set_state(inputs.params0, initial_state(inputs.optimizer, inputs.params0))
    X, Y = inputs.train
    steps = inputs.schedule.steps
    return inputs, [engine.step(X[s.rows], Y[s.rows], **inputs.step_keywords(s)) for s in steps]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_clipping_runs_clipping_and_not_with_l2_in_each_dtype(dtype):
    """In a case of each dtype that clips with L2 added after, the global norm is above the
    threshold at some steps and below it at others: both branches of min(1, c / ‖g‖)."""
    both = []
    for case in CASES:
        spec = case.spec(())
        if spec.optimizer.clip_norm and spec.optimizer.l2 and spec.dtype == dtype:
            norms = [float(trace["grad_norm"]) for trace in scratch_run(case)[1]]
            above = [n > spec.optimizer.clip_norm for n in norms]
            both.append(any(above) and not all(above))
    assert any(both), both


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_step_decay_schedule_decays_within_a_case_of_each_dtype(dtype):
    """A scheduled case of each dtype has updates before and after a decay (the lr the
    schedule gives changes within the run), one of them with AdamW's decoupled decay."""
    scheduled = [c for c in CASES if c.spec(()).optimizer.lr_schedule != "constant"]
    assert any(c.spec(()).optimizer.name == "adamw" for c in scheduled)
    cases = [c for c in scheduled if c.spec(()).dtype == dtype]
    assert cases
    for case in cases:
        rates = {float(trace["lr"]) for trace in scratch_run(case)[1]}
        assert len(rates) >= 2, (case.name, rates)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_cosine_schedule_warms_up_and_decays_within_a_case_of_each_dtype(dtype):
    """A cosine case of each dtype runs both branches: the warm-up (an lr below the base),
    the top (the base lr at the warm-up's end) and the decay (below it again)."""
    cases = [
        c
        for c in CASES
        if c.spec(()).optimizer.lr_schedule == "cosine" and c.spec(()).dtype == dtype
    ]
    assert cases
    for case in cases:
        inputs, traces = scratch_run(case)
        opt = inputs.optimizer
        rates = [float(trace["lr"]) for trace in traces]
        top = rates.index(max(rates))
        assert rates[0] < opt.lr and top == opt.lr_warmup and rates[-1] < rates[top], rates
        assert max(rates) == pytest.approx(opt.lr, rel=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dropout_drops_units_and_keeps_them_within_a_case_of_each_dtype(dtype):
    """A dropout case of each dtype: its masks drop some units of every hidden layer and
    keep others."""
    cases = [c for c in CASES if c.spec(()).dropout and c.spec(()).dtype == dtype]
    assert cases
    for case in cases:
        inputs, traces = scratch_run(case)
        layers = range(1, inputs.mlp.n_layers)
        kept, units = dict.fromkeys(layers, 0.0), dict.fromkeys(layers, 0)
        for trace in traces:
            for l in layers:
                kept[l] += trace[f"M{l}"].sum()
                units[l] += trace[f"M{l}"].size
        assert all(0 < kept[l] < units[l] for l in layers), (case.name, kept, units)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batch_norm_runs_in_a_case_of_each_dtype_and_moves_its_running_statistics(dtype):
    """A batch-normalized case of each dtype (one with dropout after it, one with another
    momentum than PyTorch's default): every step moves the running statistics."""
    cases = [c for c in CASES if c.spec(()).batch_norm and c.spec(()).dtype == dtype]
    assert cases
    specs = [c.spec(()) for c in CASES if c.spec(()).batch_norm]
    assert any(s.dropout for s in specs) and any(s.bn_momentum != 0.1 for s in specs)
    for case in cases:
        inputs, traces = scratch_run(case)
        before = initial_state(inputs.optimizer, inputs.params0)["running_mean1"]
        for trace in traces:
            assert not np.array_equal(trace["running_mean1"], before), case.name
            before = trace["running_mean1"]


@pytest.fixture(scope="module")
def check_against_torch() -> dict:
    """check against PyTorch alone, once per test module and worker."""
    return run_check(("torch",))


@pytest.mark.torch
def test_check_against_torch_agrees_on_sound_scratch_in_every_case(check_against_torch):
    cases = check_against_torch["cases"]
    assert [c["name"] for c in cases[: len(CASES)]] == [c.name for c in CASES]
    assert [c["name"] for c in cases[len(CASES) :]] == [c.name for c in DRIFT_CASES]
    failed = [c for c in cases if c["verdict"] != "agree"]
    assert not failed, failed
    assert check_against_torch["verdict"] == "agree"
    float64 = [c for c in cases[: len(CASES)] if c["dtype"] == "float64"]
    assert float64 and all(c["gradcheck"] == "agree" for c in float64)


@pytest.mark.slow  # the command end to end, both references: the quick tier has torch's above
@pytest.mark.torch
@pytest.mark.jax
def test_check_agrees_on_sound_scratch_and_says_so_case_by_case(tmp_path, capsys):
    code = cli.main(["check", "--out", str(tmp_path / "c"), "--quiet"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith(
        "AGREE: scratch agrees with torch, jax in every pair of option values"
    )
    assert out[-1].startswith("compared, of scratch's behaviour: ")
    assert len(out) == 2 + len(CASES) + len(DRIFT_CASES)  # the verdict, a line per case, what
    assert all(line.split()[0] == "AGREE" for line in out[1:-1])
    assert (tmp_path / "c" / "report.html").exists()


# (the engine-side faults are engines of their own: check --engine, in test_faults.py)
REAL_FAULTS = [f for f in FAULTS if not f.equivalent and not f.engine]


def first_changed(case_name: str, step: int, fault) -> str:
    """The first tensor of scratch's own trace that the fault moves beyond roundoff at that
    case's step, from the same (sound) state, no reference involved: what a correct
    localization must name."""
    case = next(c for c in CASES if c.name == case_name)
    inputs = build_inputs(case.spec(()))
    X, Y = inputs.train
    engine = ScratchEngine(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    engine.set_state(inputs.params0, initial_state(inputs.optimizer, inputs.params0))
    for s in inputs.schedule.steps[:step]:
        engine.step(X[s.rows], Y[s.rows], **inputs.step_keywords(s))
    rows = inputs.schedule.steps[step].rows

    def trace():
        params, state = ({k: np.copy(v) for k, v in d.items()} for d in engine.state())
        masks = None  # scratch's own draw (a fault may be in it), looked up when called
        if inputs.mlp.dropout:
            spec = inputs.spec
            masks = scratch.network.dropout_masks(
                inputs.mlp, len(rows), spec.seed, step, spec.dtype
            )
        with np.errstate(all="ignore"):
            batch = X[rows], Y[rows]
            return train_step(inputs.mlp, inputs.optimizer, params, state, *batch, masks=masks)[0]

    sound = trace()
    with fault.patch():
        broken = trace()
    step_ = RoundoffStep(inputs.mlp, inputs.optimizer, *engine.state(), X[rows], Y[rows])
    allowed = allowances(step_, sound, inputs.spec.dtype)
    changed = [c.tensor for c in compare_traces(sound, broken, "broken", allowed) if not c.ok]
    return changed[0] if changed else ""


@pytest.fixture(scope="module")
def sound_scratch(check_against_torch):
    """A sound scratch to break."""
    skip_unless_sound(check_against_torch["verdict"] == "agree")


@pytest.mark.torch
# check under every fault takes ~0.2 s each; a quarter of the catalogue in the quick tier
# (the chunk tests of test_lockstep_chunks.py take another eighth of it)
@pytest.mark.parametrize("fault", every(4, REAL_FAULTS, offset=2, name=lambda f: f.name))
def test_check_fails_on_every_fault_naming_its_function(sound_scratch, fault):
    with np.errstate(all="ignore"), fault.patch():
        report = run_check(("torch",), until_first_failure=True)
    assert report["verdict"] in ("disagree", "error")
    d = report["first_divergence"]
    assert fault.where in d["look_at"]
    judged_by_the_trace = d["kind"] not in ("batch", "input") and d["engine"] != "scratch"
    if judged_by_the_trace and report["verdict"] == "disagree":
        assert d["tensor"] == first_changed(report["failed_case"], d["step"], fault)


@pytest.mark.torch
def test_check_catches_scratchs_training_loop_drawing_the_wrong_steps_masks(sound_scratch):
    """Lockstep gives scratch each step's masks; its own loop (``train``) draws them itself,
    and only check's drift case runs it: a loop that draws step k + 1's masks disagrees."""
    from comparisons.faults.patching import edit

    wrong = edit(
        scratch.training,
        "train",
        "dropout_masks(mlp, len(rows), seed, step,",
        "dropout_masks(mlp, len(rows), seed, step + 1,",
    )
    with wrong():
        report = run_check(("torch",))
    assert report["verdict"] == "disagree"
    assert report["failed_case"].startswith("drift:") and "dropout" in report["failed_case"]


@pytest.mark.torch
def test_check_until_the_first_failure_reports_what_the_whole_check_does(sound_scratch):
    """The faults' tests stop at the first case that fails: the same verdict, failed case
    and first divergence as the whole check, from fewer cases."""
    fault = next(f for f in REAL_FAULTS if f.name == "clip-per-tensor")
    with np.errstate(all="ignore"), fault.patch():
        whole = run_check(("torch",))
        first = run_check(("torch",), until_first_failure=True)
    assert first["verdict"] == whole["verdict"] == "disagree"
    for key in ("failed_case", "first_divergence", "arbitration"):
        assert first[key] == whole[key], key
    assert len(first["cases"]) < len(whole["cases"])


def test_the_drift_cases_cover_every_optimizer_that_keeps_state_and_a_schedule():
    optimizers = {c.changes.get("optimizer", "sgd") for c in DRIFT_CASES}
    assert {"momentum", "nesterov", "adam", "adamw"} <= optimizers
    assert any(c.changes.get("lr_schedule", "constant") != "constant" for c in DRIFT_CASES)


@pytest.mark.torch
def test_a_drift_case_catches_a_momentum_buffer_kept_wrong():
    """Free-running, each engine goes on from its own buffer: one kept wrong drifts."""
    from comparisons.modes.drift import run_drift
    from comparisons.run.under_test import under_test_of
    from tests.comparisons.broken_engines import MomentumL2AfterBuffer

    case = next(c for c in DRIFT_CASES if c.changes.get("optimizer") == "momentum")
    inputs = build_inputs(case.spec(("torch",)))
    report = run_drift(inputs, under_test=under_test_of(MomentumL2AfterBuffer))
    assert report["verdict"] == "disagree"


# Bugs that need two options together: each is caught because check holds every pair (an
# engine that decays batch norm's γ and β, or leaves them out of the clipping norm, agrees
# wherever batch norm never meets L2, decoupled decay or clipping).
PAIR_BUGS = {
    "l2-decays-gamma-and-beta": edit(
        scratch.optimizers,
        "update",
        "if opt.l2 and decays:",
        "if opt.l2 and (decays or p.startswith(('gamma', 'beta'))):",
    ),
    "adamw-decays-gamma-and-beta": edit(
        scratch.optimizers,
        "update",
        "if opt.weight_decay and decays:",
        "if opt.weight_decay and (decays or p.startswith(('gamma', 'beta'))):",
    ),
    "clip-norm-without-gamma-and-beta": edit(
        scratch.optimizers,
        "clip_by_global_norm",
        "for g in grads.values()",
        "for q, g in grads.items() if not q.startswith(('gamma', 'beta'))",
    ),
}


@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("bug", list(PAIR_BUGS))
def test_check_catches_a_bug_that_needs_two_options_together(sound_scratch, bug):
    """Caught by check against PyTorch at the tensor the bug first changes; that case again
    against both references blames the engine (the references agree with each other)."""
    with np.errstate(all="ignore"), PAIR_BUGS[bug]():
        report = run_check(("torch",), until_first_failure=True)
        case = next(c for c in CASES if c.name == report["failed_case"])
        both = run_check(("torch", "jax"), cases=(case,), until_first_failure=True)
    assert report["verdict"] == both["verdict"] == "disagree"
    assert case.spec(()).batch_norm
    d = report["first_divergence"]
    bug_only = SimpleNamespace(patch=PAIR_BUGS[bug])
    assert d["tensor"] == first_changed(case.name, d["step"], bug_only)
    assert both["first_divergence"]["tensor"] == d["tensor"]
    assert both["arbitration"]["wrong"] == "scratch", both["arbitration"]


# A wrong gradient where BCE's is floored (A(1 - A) < 1e-12, PyTorch's convention), and only
# where A(1 - A) is still above 1e-20: the saturated case's second step has such a row.
FLOORED_ROWS_BUG = edit(
    scratch.losses,
    "bce",
    "np.maximum(A * (1.0 - A), 1e-12)",
    "np.maximum(A * (1.0 - A), 1e-12)"
    " / np.where((A * (1.0 - A) < 1e-12) & (A * (1.0 - A) > 1e-20), 1e-3, 1.0)",
)


@pytest.mark.torch
@pytest.mark.jax
def test_a_wrong_gradient_in_floored_rows_is_blamed_on_the_engine(sound_scratch):
    """Finite differences judge the rows gradcheck judges: not those whose BCE gradient
    follows the floor (there it is not the loss's derivative, so finite differences differ
    from every engine and leave no majority). The engine is blamed: the references agree."""
    case = next(c for c in CASES if c.name == "leaky_relu-bce-adam-l2-saturated")
    with np.errstate(all="ignore"), FLOORED_ROWS_BUG():
        report = run_check(("torch", "jax"), cases=(case,), until_first_failure=True)
    d = report["first_divergence"]
    assert report["verdict"] == "disagree" and d["tensor"] == "dZ3"
    assert d["tensor"] == first_changed(
        case.name, d["step"], SimpleNamespace(patch=FLOORED_ROWS_BUG)
    )
    assert report["arbitration"]["wrong"] == "scratch", report["arbitration"]


def test_finite_differences_judge_the_rows_gradcheck_judges_and_only_unmixed_tensors():
    from comparisons.oracle.gradcheck import judged_part

    plain = MLP((2, 3, 1), "tanh", "sigmoid", "bce")
    normed = MLP((2, 3, 1), "tanh", "sigmoid", "bce", batch_norm=True)
    rows = np.array([True, False, True])
    for mlp in (plain, normed):
        assert judged_part(mlp, "dW1", np.ones(3, bool)) == slice(None)  # every row kept
        assert judged_part(mlp, "dW2", rows) is None  # a sum over every row
        assert judged_part(mlp, "dZ2", rows) is rows  # the output layer's rows never mix
        assert judged_part(mlp, "dZ2", np.zeros(3, bool)) is None  # nothing left to judge
    assert judged_part(plain, "dZ1", rows) is rows
    assert judged_part(normed, "dZ1", rows) is None  # batch norm mixes the rows
