"""check, the command to run after changing scratch: its cases cover every path of scratch,
it agrees on sound scratch, and it fails on every fault of the catalogue, naming the tensor
the fault first changes and the function it breaks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import scratch.network
import scratch.training
from comparisons import cli
from comparisons.faults.catalogue import FAULTS
from comparisons.modes.check import run_check
from comparisons.oracle.compare import compare_traces
from comparisons.oracle.roundoff import RoundoffStep, allowances
from comparisons.run.coverage import CASES
from comparisons.run.engines import ScratchEngine, initial_state
from comparisons.run.inputs import build_inputs
from scratch.activations import ACTIVATIONS
from scratch.losses import LOSSES
from scratch.trace_schema import OPTIMIZER_STATE
from scratch.training import train_step
from tests.comparisons.lockstep_cases import skip_unless_sound
from tests.tiers import every

SPECS = [case.spec(()) for case in CASES]


def covered(predicate) -> bool:
    return any(predicate(spec) for spec in SPECS)


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
    """In a case of each dtype that clips (with L2 added after), the global norm is above the
    threshold at some steps and below it at others: both branches of min(1, c / ‖g‖)."""
    clipping = [c for c in CASES if c.spec(()).optimizer.clip_norm and c.spec(()).dtype == dtype]
    assert clipping
    for case in clipping:
        inputs, traces = scratch_run(case)
        assert inputs.optimizer.l2
        norms = [trace["grad_norm"] for trace in traces]
        above = [float(n) > inputs.optimizer.clip_norm for n in norms]
        assert any(above) and not all(above), (case.name, norms)


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
    assert [c["name"] for c in cases[:-1]] == [c.name for c in CASES]
    failed = [c for c in cases if c["verdict"] != "agree"]
    assert not failed, failed
    assert check_against_torch["verdict"] == "agree"
    float64 = [c for c in cases[:-1] if c["dtype"] == "float64"]
    assert float64 and all(c["gradcheck"] == "agree" for c in float64)


@pytest.mark.slow  # the command end to end, both references: the quick tier has torch's above
@pytest.mark.torch
@pytest.mark.jax
def test_check_agrees_on_sound_scratch_and_says_so_case_by_case(tmp_path, capsys):
    code = cli.main(["check", "--out", str(tmp_path / "c"), "--quiet"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[0].startswith("AGREE: every path of scratch agrees")
    assert len(out) == 1 + len(CASES) + 1  # the verdict, a line per case, the drift run
    assert all(line.split()[0] == "AGREE" for line in out[1:])
    assert (tmp_path / "c" / "report.html").exists()


REAL_FAULTS = [f for f in FAULTS if not f.equivalent]


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
