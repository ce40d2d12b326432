"""What only the PyTorch reference has: nn.Linear's transposed layout, converted in one place;
scratch's optimizer state loaded into torch.optim; CUDA, in full float32.

torch is imported inside the tests, never at the top, so that collecting this file needs no
torch (tests/conftest.py skips these tests where it is absent).
"""

from __future__ import annotations

import numpy as np
import pytest

from scratch.config import MLP, Optimizer
from scratch.initializers import init_params
from tests.reference.contract import OPTIMIZERS, batch, label, make, start, steps_agree

pytestmark = pytest.mark.torch

OPTIMIZER_PARAMS = [pytest.param(o, id=label(o)) for o in OPTIMIZERS]
DTYPES = ["float64", "float32"]


def test_the_layout_converts_in_one_place_and_round_trips():
    """Weight-shaped names turn (n_in, n_out) into nn.Linear's (n_out, n_in) and back; every
    other name keeps its shape. Both ways are copies, C-contiguous on the way back."""
    import torch

    from reference.torch_engine import to_canonical, to_torch

    W = np.arange(6.0).reshape(3, 2)  # canonical (n_in, n_out) = (3, 2)
    transposed = ("W1", "dW1", "ΔW2", "momentum_W3", "adam_m_W1", "adam_v_W12")
    kept = ("b1", "db1", "Δb1", "momentum_b1", "adam_v_b2", "Z1", "A1", "dZ1", "X")
    for name in (*transposed, *kept):
        t = to_torch(name, W, torch.float64, torch.device("cpu"))
        np.testing.assert_array_equal(t.numpy(), W.T if name in transposed else W, err_msg=name)
        assert not np.shares_memory(t.numpy(), W), name
        back = to_canonical(name, t, np.dtype("float64"))
        np.testing.assert_array_equal(back, W, err_msg=name)
        assert back.flags.c_contiguous and not np.shares_memory(back, t.numpy()), name


def test_set_state_puts_W_transposed_into_nn_linear_from_read_only_arrays():
    mlp = MLP((3, 2, 1), "tanh", "sigmoid", "bce")
    params = init_params(mlp, seed=1, scheme="glorot_normal")
    params["b1"] = np.array([0.5, -0.25])
    for value in params.values():  # as np.load gives them: set_state must copy, not wrap
        value.flags.writeable = False
    engine = make("torch", mlp, Optimizer("sgd"))
    engine.set_state(params, {"t": 0})
    for l, linear in enumerate((layer[0] for layer in engine.model), start=1):
        assert tuple(linear.weight.shape) == (mlp.sizes[l], mlp.sizes[l - 1])
        np.testing.assert_array_equal(linear.weight.detach().numpy(), params[f"W{l}"].T)
        np.testing.assert_array_equal(linear.bias.detach().numpy(), params[f"b{l}"])


def test_read_only_arrays_load_into_a_tensor_off_the_cpu_without_a_warning():
    """Off the CPU a value reaches its tensor through a host tensor; wrapping a read-only
    array there made torch warn on every step (seen on CUDA; here on the meta device, which
    takes the same path), and the tests turn warnings into errors."""
    import torch

    from reference.torch_engine import load_into

    for name, shape in (("b1", (3,)), ("W1", (2, 3))):
        value = np.arange(6.0)[: int(np.prod(shape))].reshape(shape)
        value.flags.writeable = False
        tensor = torch.empty(shape[::-1], dtype=torch.float64, device="meta")
        load_into(tensor, name, value)  # a warning fails the test (filterwarnings = error)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", OPTIMIZER_PARAMS)
def test_scratchs_zero_state_loads_as_torchs_own_fresh_state(rng, opt, dtype):
    """set_state with scratch's zeros at t = 0 (through ``load_state_dict``) steps bit for
    bit as torch.optim's own lazily made state does, and leaves the same state behind: the
    same keys, dtypes, devices, shapes and values."""
    import torch

    mlp = MLP((4, 6, 2), "sigmoid", "identity", "bce_logits")
    params, state = start(mlp, opt, dtype)
    X, Y = batch(rng, mlp, dtype)
    loaded, fresh = make("torch", mlp, opt, dtype), make("torch", mlp, opt, dtype)
    for engine in (loaded, fresh):
        engine.set_state(params, state)
    fresh.optimizer.state.clear()  # torch makes its own at the first step
    got, expected = loaded.step(X, Y), fresh.step(X, Y)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    for p_loaded, p_fresh in zip(loaded.model.parameters(), fresh.model.parameters(), strict=True):
        s_loaded, s_fresh = loaded.optimizer.state[p_loaded], fresh.optimizer.state[p_fresh]
        assert s_loaded.keys() == s_fresh.keys()
        for key, want in s_fresh.items():
            have = s_loaded[key]
            assert (have.dtype, have.device, have.shape) == (want.dtype, want.device, want.shape)
            assert torch.equal(have, want), key


# torch.optim.RMSprop has a foreach implementation and no fused one.
IMPLEMENTATIONS = [
    pytest.param(opt, implementation, id=f"{label(opt)}-{implementation}")
    for opt in OPTIMIZERS
    for implementation in ("foreach", "fused")
    if not (implementation == "fused" and opt.name == "rmsprop")
]


@pytest.mark.parametrize(("opt", "implementation"), IMPLEMENTATIONS)
def test_steps_agree_whichever_implementation_torch_optim_picks(rng, opt, implementation):
    """torch.optim's multi-tensor ("foreach", CUDA's default) and fused implementations agree
    with scratch too, not only the per-tensor loop it picks on the CPU. Found on an H200:
    foreach SGD with Nesterov adds μ·v into the gradients in place, and the trace, which read
    them after ``optimizer.step()``, reported dW as g + μ·v."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy")
    engine = make("torch", mlp, opt, "float64")
    for group in engine.optimizer.param_groups:
        assert implementation in group, f"torch.optim.{type(engine.optimizer).__name__}"
        group[implementation] = True
    params, state = start(mlp, opt, "float64")
    steps_agree(engine, mlp, opt, params, state, [batch(rng, mlp, "float64") for _ in range(2)])


@pytest.fixture
def cuda():
    import torch

    if not torch.cuda.is_available():  # the gpu marker also runs where only JAX sees one
        pytest.skip("this torch sees no CUDA GPU")
    return torch


@pytest.mark.gpu
@pytest.mark.parametrize("layers", [{}, {"dropout": 0.3, "batch_norm": True}], ids=["", "bn-drop"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", OPTIMIZER_PARAMS)
def test_cuda_steps_agree_with_scratch_with_float32_matmuls_pinned_highest(
    cuda, rng, opt, dtype, layers
):
    """Also with BatchNorm1d (cuDNN's on the GPU) and the dropout masks given."""
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy", **layers)
    engine = make("torch", mlp, opt, dtype, device="cuda")
    assert cuda.get_float32_matmul_precision() == "highest"  # no TF32
    params, state = start(mlp, opt, dtype)
    steps_agree(engine, mlp, opt, params, state, [batch(rng, mlp, dtype) for _ in range(2)])


def test_cuda_is_refused_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this torch sees a CUDA GPU")
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        make("torch", MLP((2, 1), "tanh", "identity", "mse"), Optimizer(), device="cuda")
