"""What only the JAX reference has: its BCE written out with PyTorch's conventions, one
compiled step per configuration and batch shape, the process-wide 64-bit switch, a GPU.

jax is imported inside the tests, never at the top, so that collecting this file needs no
JAX (tests/conftest.py skips these tests where it is absent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from comparisons.oracle.compare import assert_traces_agree
from comparisons.oracle.roundoff import RoundoffStep, allowances
from scratch.config import MLP, Optimizer
from scratch.training import train_step
from tests.child import child_env
from tests.reference.contract import OPTIMIZERS, B, batch, label, make, start, steps_agree

pytestmark = pytest.mark.jax

SGD = OPTIMIZERS[0]


def bce_step(rng, shift: float, Y: np.ndarray, dtype: str):
    """One step of a tanh → sigmoid network on BCE, its output bias shifted by ``shift`` so
    that every Z_L sits near it: (scratch's trace, JAX's trace, the parameters before)."""
    mlp = MLP((4, 6, 5, 1), "tanh", "sigmoid", "bce")
    params, state = start(mlp, SGD, dtype)
    params["b3"] = params["b3"] + np.asarray(shift, dtype)
    X, _ = batch(rng, mlp, dtype)
    engine = make("jax", mlp, SGD, dtype)
    engine.set_state(params, state)
    expected = train_step(mlp, SGD, params, state, X, Y)[0]
    allowed = allowances(RoundoffStep(mlp, SGD, params, state, X, Y), expected, dtype)
    return expected, engine.step(X, Y), allowed


def test_bce_gradient_where_the_output_saturates_is_pytorchs_floored_one(rng):
    """Where 1e-12 > A(1-A) > 0 (27.6 < Z_L < 36.7 in float64) PyTorch's BCELoss backward,
    and so scratch, floors A(1-A) at 1e-12, shrinking dZ_L to ~0.09× the true derivative
    (A - Y)/B at Z_L = 30: the JAX loss adopts that convention there (reference/jax_mlp.py)."""
    Y = np.zeros((B, 1))  # confidently wrong: the true gradient is large, (A - Y)/B ≈ 1/B
    expected, got, allowed = bce_step(rng, 31.0, Y, "float64")
    assert np.all((got["Z3"] > 27.6) & (got["Z3"] < 36.7)), got["Z3"]  # in the floored band
    assert np.all(got["dZ3"] < 0.5 * (got["A3"] - Y) / B)  # the floor, not autodiff's
    assert_traces_agree(expected, got, "jax", "saturated BCE", allowed)


def test_bce_on_an_output_of_exactly_one_gives_no_nan(rng):
    """σ(Z_L) rounds to 1.0 (Z_L > 16.6 in float32): log(1 - A) = -inf is clamped to -100,
    and the gradient through the clamp is 0, as scratch's is, not NaN."""
    Y = np.tile(np.asarray([[0.0], [1.0]], np.float32), (4, 1))[:B]
    expected, got, allowed = bce_step(rng, 20.0, Y, "float32")
    assert np.all(got["A3"] == 1.0)
    assert all(np.all(np.isfinite(v)) for v in got.values())
    assert_traces_agree(expected, got, "jax", "A_L = 1", allowed)


def test_bce_where_xlas_float64_log1p_is_off_agrees_to_roundoff(rng):
    """XLA's float64 log1p on the CPU is off by up to 128 ulps for x in [-0.4143, -0.358]
    (jax 0.10.2: found by a lockstep run with gradient clipping, where a loss of 0.53 came out
    127 ulps from scratch's while A_L agreed to one). Every output is put in that band with
    Y = 0, so that BCE's log(1 - A) is log1p of it: the loss must agree to roundoff."""
    mlp = MLP((4, 6, 5, 1), "tanh", "sigmoid", "bce")
    params, state = start(mlp, SGD)
    X, _ = batch(rng, mlp, "float64")
    Y = np.zeros((B, 1))
    params["W3"] = np.zeros_like(params["W3"])  # Z_L = b_L in every row
    params["b3"] = np.asarray([-np.log(1 / 0.4141274 - 1)])  # A_L where XLA was off most
    engine = make("jax", mlp, SGD)
    engine.set_state(params, state)
    got = engine.step(X, Y)
    assert np.all((got["A3"] > 0.358) & (got["A3"] < 0.4143)), got["A3"]
    expected = train_step(mlp, SGD, params, state, X, Y)[0]
    allowed = allowances(RoundoffStep(mlp, SGD, params, state, X, Y), expected, "float64")
    assert_traces_agree(expected, got, "jax", "log1p's band", allowed)


def test_log1p_is_within_a_few_ulps_of_numpys_everywhere():
    import jax

    from reference.jax_mlp import log1p

    jax.config.update("jax_enable_x64", True)
    x = np.concatenate([np.linspace(-0.999, 3.0, 400_001), -np.logspace(-300, -1e-9, 2001)])
    got, want = np.asarray(jax.jit(log1p)(x)), np.log1p(x)
    assert np.max(np.abs(got - want) / np.spacing(np.abs(want))) <= 4
    slope = np.asarray(jax.jit(jax.vmap(jax.grad(log1p)))(x))
    np.testing.assert_allclose(slope, 1 / (1 + x), rtol=4e-16)


@pytest.fixture
def step_compilations():
    """The compilations of the jitted training step from here on, counted through JAX's
    public monitoring events (a list that grows by one per compilation); None with a JAX too
    old to name the compiled function in its events (0.4.30, the declared floor)."""
    import jax.monitoring

    if not hasattr(jax.monitoring, "unregister_event_duration_listener"):
        yield None
        return
    seen = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            if kwargs.get("fun_name") == "jit(engine_step)":
                seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield seen
    jax.monitoring.unregister_event_duration_listener(listen)


def test_engines_of_one_configuration_share_one_compiled_step_per_batch_shape(
    rng, step_compilations
):
    """Two engines of one configuration compile one step between them (``compiled`` is
    cached); the last, partial batch of an epoch is a second shape, compiled once more, and
    agrees with scratch too."""
    from reference import jax_engine

    mlp = MLP((3, 5, 1), "relu", "identity", "bce_logits")  # no other test's: compiled here
    opt = Optimizer("adam", lr=0.02)
    params, state = start(mlp, opt)
    X, Y = batch(rng, mlp, "float64")
    hits = jax_engine.compiled.cache_info().hits
    for _ in range(2):
        engine = make("jax", mlp, opt)
        engine.set_state(params, state)
        engine.step(X, Y)
    assert jax_engine.compiled.cache_info().hits == hits + 1  # the second engine's
    counted = step_compilations is not None  # where JAX reports each compilation
    assert not counted or len(step_compilations) == 1
    steps_agree(engine, mlp, opt, params, state, [(X[:3], Y[:3]), (X[:3], Y[:3])])
    assert not counted or len(step_compilations) == 2


@pytest.fixture
def x64_off():
    """JAX with 64-bit types off, as in a fresh process; the flag is restored afterwards."""
    import jax

    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    yield jax.config
    jax.config.update("jax_enable_x64", before)


def test_float32_needs_no_x64_and_float64_turns_it_on(rng, x64_off):
    opt = OPTIMIZERS[3]
    mlp = MLP((4, 6, 5, 2), "sigmoid", "identity", "mse")
    params, state = start(mlp, opt, "float32")
    engine = make("jax", mlp, opt, "float32")
    steps_agree(engine, mlp, opt, params, state, [batch(rng, mlp, "float32")])
    assert not x64_off.jax_enable_x64

    make("jax", mlp, opt, "float64")
    assert x64_off.jax_enable_x64


@pytest.fixture
def jax_gpu():
    import jax

    try:
        return jax.devices("gpu")[0]
    except RuntimeError:  # the gpu marker also runs where only torch sees one
        pytest.skip("this JAX sees no GPU")


@pytest.mark.gpu
@pytest.mark.parametrize("layers", [{}, {"dropout": 0.3, "batch_norm": True}], ids=["", "bn-drop"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", [pytest.param(o, id=label(o)) for o in OPTIMIZERS])
def test_gpu_steps_agree_with_scratch(jax_gpu, rng, opt, dtype, layers):
    mlp = MLP((4, 6, 5, 3), "tanh", "identity", "softmax_cross_entropy", **layers)
    engine = make("jax", mlp, opt, dtype, device="gpu")
    params, state = start(mlp, opt, dtype)
    steps_agree(engine, mlp, opt, params, state, [batch(rng, mlp, dtype) for _ in range(2)])


def test_gpu_is_refused_where_jax_sees_none():
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("this JAX sees a GPU")
    with pytest.raises(ValueError, match="'gpu' is not available to JAX"):
        make("jax", MLP((2, 1), "tanh", "identity", "mse"), Optimizer(), device="gpu")


def test_every_test_process_compiles_into_a_persistent_cache():
    """The suite keeps JAX's compiled steps on disk (run's cache, unless the environment
    names another), whichever test a process runs first: ~0.5 s saved per configuration."""
    import jax

    assert jax.config.jax_compilation_cache_dir
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0


def aligned(array: np.ndarray, to: int = 64) -> np.ndarray:
    """A copy of ``array`` whose data starts on a ``to``-byte boundary (NumPy's own
    allocations are aligned to 16 bytes only: whether one lands on 64 is chance)."""
    raw = np.empty(array.nbytes + to, dtype=np.uint8)
    start = -raw.ctypes.data % to
    out = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    return out


@pytest.mark.parametrize("device_put", [False, True], ids=["its-own-path", "device-put"])
def test_the_callers_arrays_are_copied_on_either_path_onto_the_device(rng, device_put):
    """The caller reusing its arrays after set_state changes nothing in the engine, also
    where they are 64-byte aligned, which device_put onto a CPU device would alias. The
    device_put path is an engine's on a device that is not JAX's default (the CPU where a
    GPU is: where the contract test first failed, on a lent H200 host); forced here."""
    mlp = MLP((4, 6, 2), "relu", "identity", "mse")
    opt = Optimizer("adam", lr=0.01)
    params, state = start(mlp, opt)
    X, Y = batch(rng, mlp, "float64")
    _, params, state = train_step(mlp, opt, params, state, X, Y)  # nonzero moments, t = 1
    engine = make("jax", mlp, opt)
    if device_put:
        engine._direct = False
    engine.set_state(params, state)
    expected = engine.step(X, Y)

    theirs = {name: aligned(value) for name, value in params.items()}
    their_state = {k: v if k == "t" else aligned(v) for k, v in state.items()}
    engine.set_state(theirs, their_state)
    for value in [*theirs.values(), *(v for k, v in their_state.items() if k != "t")]:
        value[...] = np.nan
    trace = engine.step(X, Y)
    for name in expected:
        np.testing.assert_array_equal(trace[name], expected[name], err_msg=name)


@pytest.mark.parametrize(("theirs", "expected"), [(None, "false"), ("true", "true")])
def test_jax_takes_gpu_memory_as_it_needs_it_unless_the_user_said(monkeypatch, theirs, expected):
    """run's JAX engines never preallocate most of a GPU (several processes share one), set
    before JAX's backends start; a user's own XLA_PYTHON_CLIENT_PREALLOCATE is kept."""
    from comparisons.run.engines import make_engine

    if theirs is None:
        monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    else:
        monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", theirs)
    make_engine("jax", MLP((2, 1), "tanh", "identity", "mse"), SGD, "float64")
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == expected


def test_an_engine_off_jaxs_configured_default_device_steps_on_its_own_device():
    """Where the user points jax_default_device elsewhere (here the second of two CPU
    devices), the engine still computes on the device it was made for, not on jit's default
    (on a GPU machine: asked for the GPU, it would otherwise compute on the CPU)."""
    script = """if True:
        import json, jax, numpy as np
        from scratch.config import MLP, Optimizer
        from tests.reference.contract import batch, make, start
        jax.config.update("jax_default_device", jax.devices("cpu")[1])
        mlp = MLP((4, 6, 2), "relu", "identity", "mse")
        engine = make("jax", mlp, Optimizer("sgd", lr=0.1))
        engine.set_state(*start(mlp, Optimizer("sgd", lr=0.1)))
        engine.step(*batch(np.random.default_rng(0), mlp, "float64"))
        held = sorted({str(d) for a in engine._params.values() for d in a.devices()})
        print(json.dumps([str(jax.devices("cpu")[0]), held]))
    """
    env = child_env()
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    own, held = json.loads(done.stdout.splitlines()[-1])
    assert held == [own]
