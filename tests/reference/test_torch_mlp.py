"""The PyTorch reference against scratch: every trace tensor, every activation × loss head ×
optimizer, float64 and float32; the state it loads, the layout it converts, the names it refuses.

``reference.torch_mlp`` is imported inside the ``torch_mlp`` fixture, never at the top, so that
collecting this file needs no torch (tests/conftest.py skips these tests where it is absent).
"""

from __future__ import annotations

import numpy as np
import pytest

from scratch import MLP, Optimizer, init_params
from scratch.optimizers import init_state
from scratch.training import train_step
from tests.scratch.cases import ACTIVATION_LOSS, targets

pytestmark = pytest.mark.torch

B = 7  # batch size: odd, so no mean over the batch is a power of two by accident

# dtype -> (rtol, atol as a fraction of the tensor's scale; see assert_trace_close). Measured
# over 5 seeds × every activation-loss head × 10 optimizers × 3 steps: float64 never needs the
# atol at rtol 1e-9 (worst max|error| / scale 5e-13); float32 needs up to 6e-5, where a bias
# gradient db = Σ_i dZ_i cancels to far below its terms (and Δb, b, momentum_b inherit it).
TOLERANCES = {
    "float64": (1e-9, 1e-12),
    "float32": (1e-4, 1e-4),
}

OPTIMIZERS = [
    pytest.param(Optimizer("sgd", lr=0.1), id="sgd"),
    pytest.param(Optimizer("momentum", lr=0.1, momentum=0.9), id="momentum"),
    pytest.param(Optimizer("nesterov", lr=0.1, momentum=0.9), id="nesterov"),
    pytest.param(Optimizer("adam", lr=0.01), id="adam"),
    pytest.param(Optimizer("adamw", lr=0.01, weight_decay=0.1), id="adamw"),
]
DECAYED = [
    pytest.param(Optimizer("sgd", lr=0.1, l2=0.3), id="sgd-l2"),
    pytest.param(Optimizer("momentum", lr=0.1, l2=0.3), id="momentum-l2"),
    pytest.param(Optimizer("nesterov", lr=0.1, l2=0.3), id="nesterov-l2"),
    pytest.param(Optimizer("adam", lr=0.01, l2=0.3), id="adam-l2"),
    pytest.param(Optimizer("adamw", lr=0.01, weight_decay=0.3), id="adamw-wd"),
]
# float32 is the slow tier's: the quick tier's lockstep tests cover float32 for every optimizer.
DTYPES = [
    pytest.param("float64", id="f64"),
    pytest.param("float32", id="f32", marks=pytest.mark.slow),
]


@pytest.fixture
def torch_mlp():
    import reference.torch_mlp

    return reference.torch_mlp


def assert_trace_close(
    actual: dict, expected: dict, dtype: str, label: str = "", state_before: dict | None = None
) -> None:
    """Same names in the same order, then per tensor: shape, dtype, values.

    ``|a - e| <= rtol·|e| + atol`` with atol a fraction of the tensor's scale: its largest
    magnitude, except that an update Δθ = new - old carries the rounding of θ (eps·|θ|, however
    small the update), so its scale is θ's; and a state v = μ·v_prev + g can cancel to far
    below its terms, so the state's scale includes the previous state's (``state_before``).
    """
    assert list(actual) == list(expected), f"{label}: trace names differ"
    rtol, atol_fraction = TOLERANCES[dtype]
    for name, e in expected.items():
        a = actual[name]
        where = f"{label} tensor {name}"
        assert a.shape == e.shape, f"{where}: shape {a.shape} != {e.shape}"
        assert a.dtype == e.dtype, f"{where}: dtype {a.dtype} != {e.dtype}"
        if name.startswith("Δ"):
            scale = np.max(np.abs(expected[name[1:]]))
        else:
            before = (state_before or {}).get(name, 0.0)
            scale = max(np.max(np.abs(e), initial=0.0), np.max(np.abs(before)))
        atol = atol_fraction * float(scale)
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=where)


def batch(rng, mlp: MLP, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(B, mlp.sizes[0])).astype(dtype)
    return X, targets(rng, mlp.loss, B, mlp.sizes[-1]).astype(dtype)


def two_steps_agree(
    torch_mlp, rng, mlp: MLP, opt: Optimizer, dtype: str, device: str = "cpu"
) -> None:
    """Lockstep: both engines start each step from scratch's parameters and state; the
    second step starts from nonzero optimizer state (momentum buffers, Adam moments, t = 1)."""
    engine = torch_mlp.TorchMLP(mlp, opt, dtype=dtype, device=device)
    params = init_params(mlp, seed=0, dtype=dtype)
    state = init_state(opt, params)
    for step in range(2):
        X, Y = batch(rng, mlp, dtype)
        engine.set_state(params, state)
        actual = engine.step(X, Y)
        before = state
        expected, params, state = train_step(mlp, opt, params, state, X, Y)
        assert_trace_close(actual, expected, dtype, f"step {step}", state_before=before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize(("hidden", "loss", "out", "K"), ACTIVATION_LOSS)
def test_trace_matches_scratch(torch_mlp, rng, hidden, loss, out, K, opt, dtype):
    two_steps_agree(torch_mlp, rng, MLP((4, 6, 5, K), hidden, out, loss), opt, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_cuda_trace_matches_scratch_in_full_float32(torch_mlp, rng, opt, dtype):
    import torch

    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    two_steps_agree(torch_mlp, rng, mlp, opt, dtype, device="cuda")
    assert torch.get_float32_matmul_precision() == "highest"


def test_cuda_without_a_gpu_is_refused(torch_mlp):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA GPU")
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        torch_mlp.TorchMLP(MLP((2, 1), "tanh", "identity", "mse"), Optimizer(), device="cuda")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", DECAYED)
@pytest.mark.parametrize("hidden", ["tanh", "relu"])
def test_weight_decay_matches_scratch(torch_mlp, rng, hidden, opt, dtype):
    two_steps_agree(torch_mlp, rng, MLP((4, 6, 5, 3), hidden, "identity", "mse"), opt, dtype)


@pytest.mark.parametrize("opt", DECAYED)
def test_weight_decay_touches_weights_only(torch_mlp, rng, opt):
    """The same step with and without decay: every bias update is bit for bit the same."""
    mlp = MLP((4, 6, 2), "tanh", "identity", "mse")
    params = init_params(mlp, seed=0)
    X, Y = batch(rng, mlp, "float64")
    plain = Optimizer(opt.name, lr=opt.lr)
    traces = []
    for o in (opt, plain):
        engine = torch_mlp.TorchMLP(mlp, o)
        engine.set_state(params, init_state(o, params))
        traces.append(engine.step(X, Y))
    decayed, undecayed = traces
    for l in (1, 2):
        np.testing.assert_array_equal(decayed[f"Δb{l}"], undecayed[f"Δb{l}"])
        assert np.any(decayed[f"ΔW{l}"] != undecayed[f"ΔW{l}"])


@pytest.mark.parametrize("opt", [p for p in OPTIMIZERS if p.id != "sgd"])
def test_loaded_zero_state_equals_torchs_fresh_state(torch_mlp, rng, opt):
    """set_state with scratch's zeros at t = 0 gives exactly what torch's lazily made state
    gives, and the state torch keeps afterwards has the same keys, dtypes and devices."""
    mlp = MLP((4, 6, 2), "sigmoid", "identity", "bce_logits")
    params = init_params(mlp, seed=0)
    X, Y = batch(rng, mlp, "float64")
    loaded, fresh = torch_mlp.TorchMLP(mlp, opt), torch_mlp.TorchMLP(mlp, opt)
    for engine in (loaded, fresh):
        engine.set_state(params, init_state(opt, params))
    fresh.optimizer.state.clear()
    assert_traces_equal(loaded.step(X, Y), fresh.step(X, Y))
    for p_loaded, p_fresh in zip(loaded.model.parameters(), fresh.model.parameters(), strict=True):
        s_loaded, s_fresh = loaded.optimizer.state[p_loaded], fresh.optimizer.state[p_fresh]
        assert s_loaded.keys() == s_fresh.keys()
        for key in s_fresh:
            assert s_loaded[key].dtype == s_fresh[key].dtype, key
            assert s_loaded[key].device == s_fresh[key].device, key
            assert s_loaded[key].shape == s_fresh[key].shape, key


def assert_traces_equal(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_engine_keeps_its_state_between_steps(torch_mlp, rng, opt):
    """Free running (no set_state between steps) follows scratch's own training run."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    params = init_params(mlp, seed=0)
    state = init_state(opt, params)
    engine = torch_mlp.TorchMLP(mlp, opt)
    engine.set_state(params, state)
    for step in range(4):
        X, Y = batch(rng, mlp, "float64")
        before = state
        expected, params, state = train_step(mlp, opt, params, state, X, Y)
        assert_trace_close(engine.step(X, Y), expected, "float64", f"step {step}", before)


def test_nothing_leaks_between_steps_or_into_the_callers_arrays(torch_mlp, rng):
    """No gradient accumulates across steps, and set_state copies: torch.optim's in-place
    updates never reach the arrays it was given."""
    mlp = MLP((4, 6, 2), "relu", "identity", "mse")
    opt = Optimizer("adam", lr=0.01)
    params = init_params(mlp, seed=0)
    X, Y = batch(rng, mlp, "float64")
    _, params, state = train_step(mlp, opt, params, init_state(opt, params), X, Y)
    kept = {name: np.copy(v) for name, v in {**params, **state}.items()}
    engine = torch_mlp.TorchMLP(mlp, opt)
    traces = []
    for _ in range(2):
        engine.set_state(params, state)
        traces.append(engine.step(X, Y))
    assert_traces_equal(traces[1], traces[0])
    for name, value in {**params, **state}.items():
        np.testing.assert_array_equal(value, kept[name], err_msg=name)


def test_the_layout_converts_in_one_place_and_round_trips(torch_mlp):
    """Weight-shaped names turn (n_in, n_out) into nn.Linear's (n_out, n_in) and back; all
    other names keep their shape."""
    import torch

    W = np.arange(6.0).reshape(3, 2)  # canonical (n_in, n_out) = (3, 2)
    for name in ("W1", "dW1", "ΔW2", "momentum_W3", "adam_m_W1", "adam_v_W12"):
        t = torch_mlp._to_torch(name, W, torch.float64, torch.device("cpu"))
        assert tuple(t.shape) == (2, 3), name
        np.testing.assert_array_equal(t.numpy(), W.T)
        back = torch_mlp._to_canonical(name, t, np.dtype("float64"))
        np.testing.assert_array_equal(back, W)
        assert back.flags.c_contiguous
    for name in ("b1", "db1", "Δb1", "momentum_b1", "adam_v_b2", "Z1", "A1", "dZ1", "X"):
        t = torch_mlp._to_torch(name, W, torch.float64, torch.device("cpu"))
        assert tuple(t.shape) == (3, 2), name


def test_set_state_puts_W_transposed_into_nn_linear(torch_mlp):
    mlp = MLP((3, 2, 1), "tanh", "sigmoid", "bce")
    params = init_params(mlp, seed=1, scheme="glorot_normal")
    params["b1"] = np.array([0.5, -0.25])
    for value in params.values():  # as np.load gives them: set_state must copy, not wrap
        value.flags.writeable = False
    engine = torch_mlp.TorchMLP(mlp, Optimizer("sgd"))
    engine.set_state(params, {"step": 0})
    first = engine.model[0]
    assert tuple(first.weight.shape) == (2, 3)
    np.testing.assert_array_equal(first.weight.detach().numpy(), params["W1"].T)
    np.testing.assert_array_equal(first.bias.detach().numpy(), params["b1"])
    assert_traces_equal(engine.params(), params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_predict_is_the_forward_pass(torch_mlp, rng, dtype):
    mlp = MLP((4, 6, 5, 3), "leaky_relu", "identity", "softmax_cross_entropy")
    opt = Optimizer("sgd")
    params = init_params(mlp, seed=0, dtype=dtype)
    X, Y = batch(rng, mlp, dtype)
    engine = torch_mlp.TorchMLP(mlp, opt, dtype=dtype)
    engine.set_state(params, {"step": 0})
    predicted = engine.predict(X)
    assert predicted.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(predicted, engine.step(X, Y)["A3"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dtype": "float16"}, "unknown dtype 'float16'; choose one of float64, float32"),
        ({"device": "tpu"}, "unknown device 'tpu'; choose one of cpu, cuda"),
        ({"device": "mps"}, "unknown device 'mps'; choose one of cpu, cuda"),
        ({"hidden": "gelu"}, "unknown activation 'gelu'; choose one of sigmoid, tanh, relu"),
        ({"loss": "hinge"}, "unknown loss 'hinge'; choose one of mse, bce, bce_logits"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose one of sgd, momentum"),
    ],
    ids=["dtype", "device", "device-mps", "activation", "loss", "optimizer"],
)
def test_bad_names_are_refused_with_the_valid_ones(torch_mlp, change, message):
    mlp, opt = MLP((2, 3, 1), "tanh", "identity", "mse"), Optimizer("sgd")
    # A name scratch might one day accept that the reference does not know: scratch's
    # frozen dataclasses would refuse it, so it is set behind their back.
    for field in ("hidden", "loss"):
        if field in change:
            object.__setattr__(mlp, field, change[field])
    if "optimizer" in change:
        object.__setattr__(opt, "name", change["optimizer"])
    kwargs = {k: v for k, v in change.items() if k in ("dtype", "device")}
    with pytest.raises(ValueError, match=message):
        torch_mlp.TorchMLP(mlp, opt, **kwargs)


def test_momentum_zero_is_refused(torch_mlp):
    mlp = MLP((2, 3, 1), "tanh", "identity", "mse")
    with pytest.raises(ValueError, match="momentum > 0"):
        torch_mlp.TorchMLP(mlp, Optimizer("momentum", momentum=0.0))


def test_bad_state_is_refused(torch_mlp):
    mlp = MLP((2, 3, 1), "tanh", "identity", "mse")
    opt = Optimizer("adam")
    engine = torch_mlp.TorchMLP(mlp, opt)
    with pytest.raises(RuntimeError, match="call set_state"):
        engine.step(np.ones((1, 2)), np.ones((1, 1)))
    params = init_params(mlp, seed=0)
    with pytest.raises(ValueError, match="lacks"):
        engine.set_state(params, {"step": 0})
    with pytest.raises(ValueError, match=r"W1 has shape \(3, 2\), expected \(2, 3\)"):
        engine.set_state({**params, "W1": params["W1"].T}, init_state(opt, params))
