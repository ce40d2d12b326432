"""Backpropagation from scratch, in NumPy only: the model users read, run and change.

Modules, in the order the algorithm uses them:
    activations  g and g' for sigmoid, tanh, relu, leaky_relu, identity
    losses       mean-over-the-batch losses and their gradient ∂L/∂A_L
    network      the MLP, its initializers, the forward pass and the backward pass
    optimizers   sgd, momentum, nesterov, adam, adamw (and L2 regularization)
    training     one training step's trace, and the loop over a batch schedule
    gradcheck    central finite differences, a judge that needs no framework
"""

from scratch.activations import ACTIVATIONS
from scratch.gradcheck import numerical_gradients
from scratch.losses import LOSSES
from scratch.network import (
    INITIALIZERS,
    MLP,
    ScratchInputError,
    forward,
    forward_backward,
    forward_backward_per_example,
    init_params,
)
from scratch.optimizers import OPTIMIZERS, Optimizer
from scratch.training import NonFiniteLossError, accuracy, classify, train, train_step

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MLP",
    "OPTIMIZERS",
    "NonFiniteLossError",
    "Optimizer",
    "ScratchInputError",
    "accuracy",
    "classify",
    "forward",
    "forward_backward",
    "forward_backward_per_example",
    "init_params",
    "numerical_gradients",
    "train",
    "train_step",
]
