"""trace_schema.py: the names of a step's trace, their order, what each name means, and the
"look at" pointer (``producer``) that sends a reader to the scratch function behind it."""

from __future__ import annotations

import dataclasses
import importlib
import re

import numpy as np
import pytest

from scratch import MLP, Optimizer, ScratchInputError, init_params
from scratch.activations import ACTIVATIONS
from scratch.losses import LOSSES
from scratch.network import dropout_masks
from scratch.optimizers import init_state
from scratch.trace_equations import describe
from scratch.trace_schema import (
    OPTIMIZER_STATE,
    batch_names,
    dtype_of,
    is_weight_shaped,
    kind_of,
    layer_of,
    names_of,
    parse,
    shape_of,
    trace_names,
)
from scratch.training import train_step
from tests.scratch.cases import MLP_421, targets

OPTIMIZERS = list(OPTIMIZER_STATE)

# --- names and order ----------------------------------------------------------------------

# Sizes (4, 3, 2, 1): three layers with weights. Forward bottom-up, the loss, backward
# top-down (each layer's error term, then its gradients), the updates and the new
# parameters bottom-up.
SGD_3_LAYERS = [
    "Z1", "A1", "Z2", "A2", "Z3", "A3",
    "loss",
    "dZ3", "dW3", "db3", "dZ2", "dW2", "db2", "dZ1", "dW1", "db1",
    "ΔW1", "Δb1", "ΔW2", "Δb2", "ΔW3", "Δb3",
    "W1", "b1", "W2", "b2", "W3", "b3",
]  # fmt: skip

# Adam keeps two moments per parameter, m then v, parameter by parameter, between the
# updates and the new parameters.
ADAM_3_LAYERS = [
    "Z1", "A1", "Z2", "A2", "Z3", "A3",
    "loss",
    "dZ3", "dW3", "db3", "dZ2", "dW2", "db2", "dZ1", "dW1", "db1",
    "ΔW1", "Δb1", "ΔW2", "Δb2", "ΔW3", "Δb3",
    "t",
    "adam_m_W1", "adam_v_W1", "adam_m_b1", "adam_v_b1",
    "adam_m_W2", "adam_v_W2", "adam_m_b2", "adam_v_b2",
    "adam_m_W3", "adam_v_W3", "adam_m_b3", "adam_v_b3",
    "W1", "b1", "W2", "b2", "W3", "b3",
]  # fmt: skip

# Momentum and Nesterov keep one buffer per parameter.
MOMENTUM_3_LAYERS = [
    "Z1", "A1", "Z2", "A2", "Z3", "A3",
    "loss",
    "dZ3", "dW3", "db3", "dZ2", "dW2", "db2", "dZ1", "dW1", "db1",
    "ΔW1", "Δb1", "ΔW2", "Δb2", "ΔW3", "Δb3",
    "momentum_W1", "momentum_b1", "momentum_W2", "momentum_b2", "momentum_W3", "momentum_b3",
    "W1", "b1", "W2", "b2", "W3", "b3",
]  # fmt: skip


def test_trace_names_with_sgd_follow_the_dataflow_order():
    assert trace_names(MLP_421.n_layers, "sgd") == SGD_3_LAYERS


def test_trace_names_with_adam_hold_the_step_count_and_both_moments_after_the_updates():
    assert trace_names(MLP_421.n_layers, "adam") == ADAM_3_LAYERS


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_trace_names_with_momentum_hold_one_buffer_per_parameter(optimizer):
    assert trace_names(MLP_421.n_layers, optimizer) == MOMENTUM_3_LAYERS


def test_adamw_traces_the_same_names_as_adam():
    assert trace_names(MLP_421.n_layers, "adamw") == ADAM_3_LAYERS


def test_batch_names_are_the_rows_then_the_inputs_and_targets():
    assert batch_names() == ["rows", "X", "Y"]


# --- what a name means ----------------------------------------------------------------------

# name: (kind, layer, parameter, weight-shaped)
PARSED = {
    "Z2": ("forward", 2, None, False),
    "A1": ("forward", 1, None, False),
    "loss": ("loss", None, None, False),
    "dZ3": ("error_term", 3, None, False),
    "dW1": ("gradient", 1, "W1", True),
    "db2": ("gradient", 2, "b2", False),
    "ΔW1": ("update", 1, "W1", True),
    "Δb3": ("update", 3, "b3", False),
    "momentum_W2": ("optimizer_state", 2, "W2", True),
    "adam_m_b1": ("optimizer_state", 1, "b1", False),
    "adam_v_W12": ("optimizer_state", 12, "W12", True),  # layer 12: more than one digit
    "W3": ("parameter", 3, "W3", True),
    "b1": ("parameter", 1, "b1", False),
    "rows": ("batch", None, None, False),
    "X": ("input", None, None, False),
    "Y": ("input", None, None, False),
    "t": ("counter", None, None, False),
    "M2": ("dropout_mask", 2, None, False),
    "mu1": ("batch_stat", 1, None, False),
    "running_var2": ("running_stat", 2, None, False),
    "dvar1": ("batch_stat_grad", 1, None, False),
    "dN2": ("error_term", 2, None, False),
    "gamma1": ("parameter", 1, "gamma1", False),
    "dbeta2": ("gradient", 2, "beta2", False),
    "momentum_gamma1": ("optimizer_state", 1, "gamma1", False),
    "D1": ("forward", 1, None, False),
}


@pytest.mark.parametrize(("name", "expected"), PARSED.items(), ids=list(PARSED))
def test_parse_reads_kind_layer_and_parameter_from_the_name(name, expected):
    kind, layer, parameter, weight_shaped = expected
    tensor = parse(name)
    assert (tensor.name, tensor.parameter) == (name, parameter)
    assert kind_of(name) == tensor.kind == kind
    assert layer_of(name) == tensor.layer == layer
    assert is_weight_shaped(name) is tensor.weight_shaped is weight_shaped


@pytest.mark.parametrize("name", ["Q1", "dQ1", "W", "Δ", "adam_x_W1"])
def test_parse_refuses_a_name_that_is_no_trace_tensor(name):
    for read in (parse, kind_of, layer_of, is_weight_shaped):
        with pytest.raises(KeyError, match=re.escape(repr(name))):
            read(name)


# --- what a name means in one run: describe ----------------------------------------------


def every_network() -> list[MLP]:
    """A 3-layer network for every hidden activation, output activation and loss that fit
    together; two outputs, so that softmax_cross_entropy fits too."""
    networks = []
    for hidden in ACTIVATIONS:
        for output in ACTIVATIONS:
            for loss in LOSSES:
                try:
                    networks.append(MLP((4, 3, 2, 2), hidden, output, loss))
                except ScratchInputError:
                    continue
    return networks


def test_every_network_covers_every_activation_and_loss():
    networks = every_network()
    assert {m.hidden for m in networks} == set(ACTIVATIONS)
    assert {m.output for m in networks} == set(ACTIVATIONS)
    assert {m.loss for m in networks} == set(LOSSES)


PRODUCER = re.compile(r"scratch/(?P<file>\w+)\.py:(?P<function>\w+)")


def missing_producers(optimizer: Optimizer) -> set[str]:
    """Every producer part, over every name of every network, that names no function
    defined in the scratch module it names."""
    missing = set()
    networks = every_network()
    networks += [dataclasses.replace(mlp, dropout=0.5) for mlp in networks]
    for mlp in networks:
        for name in batch_names() + names_of(mlp, optimizer):
            for part in describe(name, mlp, optimizer).producer.split(", "):
                m = PRODUCER.fullmatch(part)
                if m is None:
                    missing.add(f"{name}: {part!r} is not scratch/<file>.py:<function>")
                    continue
                module = importlib.import_module(f"scratch.{m['file']}")
                function = getattr(module, m["function"], None)
                if not callable(function) or function.__module__ != module.__name__:
                    missing.add(f"{name}: {part}")
    return missing


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_producer_names_a_function_of_its_scratch_module(optimizer):
    assert missing_producers(Optimizer(optimizer)) == set()


def test_the_top_layers_error_term_has_its_own_equation_and_producer():
    # The same activation on every layer, so only the layer's place can tell them apart.
    mlp = MLP((4, 3, 2, 1), hidden="tanh", output="tanh", loss="mse")
    top, hidden = describe("dZ3", mlp, Optimizer()), describe("dZ2", mlp, Optimizer())
    assert top.equation == "dZ3 = ∂loss/∂A3 * tanh'(Z3)"
    assert hidden.equation == "dZ2 = (dZ3 @ W3.T) * tanh'(Z2)"
    assert "network.py:output_error" in top.producer
    assert "network.py:output_error" not in hidden.producer
    assert "network.py:hidden_error" in hidden.producer


# --- the schema is what train_step produces ---------------------------------------------


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("sizes", [(3, 2), (3, 4, 2, 2)], ids=["1-layer", "3-layer"])
def test_train_step_produces_exactly_the_trace_names_in_order(rng, optimizer, sizes):
    mlp = MLP(sizes, "tanh", "identity", "softmax_cross_entropy")
    opt = Optimizer(optimizer, lr=0.1)
    params = init_params(mlp, seed=0)
    X, Y = rng.normal(size=(5, sizes[0])), targets(rng, mlp.loss, 5, sizes[-1])
    trace, _, _ = train_step(mlp, opt, params, init_state(opt, params), X, Y)
    assert list(trace) == trace_names(mlp.n_layers, optimizer)


def test_every_tensor_is_reported_in_the_runs_dtype_but_the_integer_step_count():
    assert dtype_of("t", "float32") == "int64"
    assert {dtype_of(n, "float32") for n in trace_names(3, "adam") if n != "t"} == {"float32"}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_tensors_stated_shape_is_the_shape_scratch_computes(optimizer):
    mlp, opt = MLP((4, 3, 2, 2), "tanh", "identity", "mse"), Optimizer(optimizer)
    params = init_params(mlp, seed=0)
    X, Y = np.ones((5, 4)), np.ones((5, 2))
    trace = train_step(mlp, opt, params, init_state(opt, params), X, Y)[0]
    assert {n: np.shape(v) for n, v in trace.items()} == {
        n: shape_of(n, mlp.sizes, 5) for n in trace
    }


# --- dropout -----------------------------------------------------------------------------


def test_with_dropout_each_hidden_layer_traces_its_mask_and_dropped_output_after_a():
    names = trace_names(MLP_421.n_layers, "sgd", dropout=True)
    forward = ["Z1", "A1", "M1", "D1", "Z2", "A2", "M2", "D2", "Z3", "A3"]
    assert names == forward + SGD_3_LAYERS[6:]


def test_a_dropout_run_describes_what_each_layer_reads_and_the_error_through_the_mask():
    mlp = MLP((4, 3, 2, 1), hidden="tanh", output="identity", loss="mse", dropout=0.5)
    opt = Optimizer()
    assert describe("Z2", mlp, opt).equation == "Z2 = D1 @ W2 + b2"
    assert describe("dW3", mlp, opt).equation == "dW3 = D2.T @ dZ3"
    assert "network.py:layer_output" in describe("dW3", mlp, opt).producer
    assert describe("D1", mlp, opt).equation == "D1 = A1 ⊙ M1 / (1 - p)"
    hidden = describe("dZ2", mlp, opt)
    assert hidden.equation == "dZ2 = ((dZ3 @ W3.T) ⊙ M2 / (1 - p)) * tanh'(Z2)"
    assert "network.py:dropout_backward" in hidden.producer
    assert describe("dZ3", mlp, opt).equation == "dZ3 = ∂loss/∂A3 * identity'(Z3)"
    plain = MLP((4, 3, 2, 1), hidden="tanh", output="identity", loss="mse")
    assert describe("Z2", plain, opt).equation == "Z2 = A1 @ W2 + b2"


def test_a_dropout_step_traces_exactly_the_schemas_names_in_their_shapes(rng):
    mlp = MLP((4, 3, 2, 2), "relu", "identity", "mse", dropout=0.3)
    opt = Optimizer("adam", clip_norm=1.0)
    params = init_params(mlp, seed=0)
    X, Y = rng.normal(size=(5, 4)), np.ones((5, 2))
    masks = dropout_masks(mlp, 5, 0, 0)
    trace = train_step(mlp, opt, params, init_state(opt, params), X, Y, masks=masks)[0]
    assert list(trace) == names_of(mlp, opt)
    assert {n: np.shape(v) for n, v in trace.items()} == {
        n: shape_of(n, mlp.sizes, 5) for n in trace
    }


# --- batch normalization -------------------------------------------------------------------


def test_a_batch_normalized_layer_traces_its_statistics_after_z_and_its_gradients_before_dz():
    names = trace_names(3, "sgd", batch_norm=True)
    bn = ["mu1", "var1", "running_mean1", "running_var1", "xhat1", "N1"]
    assert names[:8] == ["Z1", *bn, "A1"]
    top = names.index("db3")
    assert names[top + 1 : top + 9] == [
        "dN2", "dgamma2", "dbeta2", "dxhat2", "dvar2", "dmu2", "dZ2", "dW2"
    ]  # fmt: skip
    assert "db2" not in names and "db1" not in names  # no bias before batch norm
    assert names[-8:] == ["W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"]


def test_a_batch_normalized_layer_describes_z_without_bias_and_a_of_n():
    mlp = MLP((4, 3, 2, 1), hidden="relu", output="identity", loss="mse", batch_norm=True)
    opt = Optimizer()
    assert describe("Z1", mlp, opt).equation == "Z1 = X @ W1"
    assert describe("Z3", mlp, opt).equation == "Z3 = A2 @ W3 + b3"
    assert describe("A2", mlp, opt).equation == "A2 = relu(N2)"
    assert describe("dN2", mlp, opt).equation == "dN2 = (dZ3 @ W3.T) * relu'(N2)"
    assert "batch_norm_backward" in describe("dZ2", mlp, opt).producer
    assert shape_of("dvar1", mlp.sizes, 7) == (3,) and shape_of("xhat1", mlp.sizes, 7) == (7, 3)


def test_the_optimizer_states_equation_reads_the_gradient_the_run_gives_it():
    # with L2 and clipping, the buffers accumulate s·dW + l2·W, not dW: the equation shown
    # must be the one the run computes (an engine that keeps the plain form disagrees)
    mlp = MLP((3, 4, 1))
    momentum = Optimizer("momentum", lr=0.1, l2=0.01, clip_norm=1.0)
    shown = describe("momentum_W1", mlp, momentum).equation
    assert shown.startswith("momentum_W1 = μ·momentum_W1 + (s·dW1 + l2·W1)")
    assert "s = min(1, clip_norm/(grad_norm + 1e-6))" in shown
    # biases take no L2
    assert describe("momentum_b1", mlp, momentum).equation.startswith(
        "momentum_b1 = μ·momentum_b1 + (s·db1)"
    )
    adam = Optimizer("adam", lr=0.01, l2=0.01)
    assert describe("adam_m_W2", mlp, adam).equation == (
        "adam_m_W2 = β1·adam_m_W2 + (1-β1)·(dW2 + l2·W2)"
    )
    assert describe("adam_v_W2", mlp, adam).equation == (
        "adam_v_W2 = β2·adam_v_W2 + (1-β2)·(dW2 + l2·W2)²"
    )
    plain = Optimizer("adam", lr=0.01)
    assert describe("adam_v_b2", mlp, plain).equation == "adam_v_b2 = β2·adam_v_b2 + (1-β2)·db2²"


def test_the_update_shows_the_schedules_learning_rate_and_the_decoupled_decay():
    mlp = MLP((3, 4, 1))
    step = Optimizer("sgd", lr=0.1, lr_schedule="step", lr_step_size=2, lr_gamma=0.5)
    assert describe("ΔW1", mlp, step).equation == (
        "ΔW1 = -lr·dW1,  lr = lr·γ^⌊(t - 1) / lr_step_size⌋"
    )
    adamw = Optimizer("adamw", lr=0.01, weight_decay=0.1)
    assert describe("ΔW1", mlp, adamw).equation.startswith("ΔW1 = -lr·λ·W1 - lr·m̂")
    assert "λ" not in describe("Δb1", mlp, adamw).equation
