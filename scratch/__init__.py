"""Backpropagation from scratch, in NumPy only: the model users read, run and change.

Modules, in the order the algorithm uses them:
    trace_schema  the name, kind, layer and meaning of every tensor a training step reports
    activations   g and g' for sigmoid, tanh, relu, leaky_relu, elu, identity
    losses        mean-over-the-batch losses and their gradient ∂L/∂A_L
    initializers  the seeded initial weights
    network       the forward pass and the backward pass, one equation per function
    optimizers    sgd, momentum, nesterov, adam, adamw, rmsprop (and L2 regularization)
    training      one training step's trace, and the loop over a batch schedule
    gradcheck     central finite differences, a judge that needs no framework
    config        the network and optimizer records, and the checks of every input
"""

from scratch.activations import ACTIVATIONS
from scratch.config import MLP, Optimizer, ScratchInputError
from scratch.gradcheck import numerical_gradients
from scratch.initializers import INITIALIZERS, init_params
from scratch.losses import LOSSES
from scratch.network import forward, forward_backward, forward_backward_per_example
from scratch.optimizers import RULES
from scratch.training import NonFiniteLossError, accuracy, classify, train, train_step

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MLP",
    "RULES",
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
