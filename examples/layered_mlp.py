"""A multilayer perceptron with backprop, written the way many courses teach it: layer objects.

Each layer is an object with ``forward(x)`` (which keeps what its backward pass needs) and
``backward(grad)`` (which takes ∂loss/∂output and returns ∂loss/∂input); the loss and the
optimizers are objects too. Nothing here comes from this project: the only inputs are two
plain configuration objects, read through their attributes, and NumPy.

It is plugged into the oracle through the public engine contract
(``comparisons/run/contract.py``) by the factory ``make_engine``::

    python -m comparisons check --engine examples.layered_mlp:make_engine

Shapes: a row is one example; B the batch size, n_in and n_out a layer's widths.
"""

from __future__ import annotations

import numpy as np

LEAKY_SLOPE = 0.01
LOG_FLOOR = -100.0  # binary cross-entropy clamps each log here (PyTorch's BCELoss does)
BCE_GRAD_FLOOR = 1e-12  # and floors A(1 - A) in its gradient


# --- layers ------------------------------------------------------------------------------


class Dense:
    """z = x @ W + b, with W (n_in, n_out) and b (n_out,)."""

    def __init__(self, W: np.ndarray, b: np.ndarray):
        self.W, self.b = W, b
        self.x = self.dW = self.db = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x  # (B, n_in), kept for dW
        return x @ self.W + self.b

    def backward(self, dz: np.ndarray) -> np.ndarray:
        """dW = xᵀ dz, db = Σ_rows dz; returns dx = dz Wᵀ (with W as it was in forward)."""
        self.dW = self.x.T @ dz
        self.db = dz.sum(axis=0)
        return dz @ self.W.T


class Sigmoid:
    def forward(self, z: np.ndarray) -> np.ndarray:
        # 1 / (1 + e^-z) for z ≥ 0 and e^z / (1 + e^z) below: exp never sees a large argument
        e = np.exp(-np.abs(z))
        self.a = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)
        return self.a

    def backward(self, da: np.ndarray) -> np.ndarray:
        return da * self.a * (1 - self.a)


class Tanh:
    def forward(self, z: np.ndarray) -> np.ndarray:
        self.a = np.tanh(z)
        return self.a

    def backward(self, da: np.ndarray) -> np.ndarray:
        return da * (1 - self.a**2)


class ReLU:
    def forward(self, z: np.ndarray) -> np.ndarray:
        self.positive = z > 0  # the slope is 0 at z = 0
        return np.where(self.positive, z, 0).astype(z.dtype)

    def backward(self, da: np.ndarray) -> np.ndarray:
        return np.where(self.positive, da, 0).astype(da.dtype)


class LeakyReLU:
    def forward(self, z: np.ndarray) -> np.ndarray:
        self.positive = z > 0  # the slope is LEAKY_SLOPE at z = 0
        return np.where(self.positive, z, LEAKY_SLOPE * z).astype(z.dtype)

    def backward(self, da: np.ndarray) -> np.ndarray:
        return np.where(self.positive, da, LEAKY_SLOPE * da).astype(da.dtype)


class Identity:
    def forward(self, z: np.ndarray) -> np.ndarray:
        return z

    def backward(self, da: np.ndarray) -> np.ndarray:
        return da


ACTIVATIONS = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "identity": Identity,
}


# --- losses: forward(a, y) -> the batch's mean loss; backward() -> ∂loss/∂a -------------------


class MSE:
    def forward(self, a, y):
        self.diff = a - y
        return np.mean(self.diff**2)

    def backward(self):
        return 2 * self.diff / self.diff.size


class BCE:
    """On probabilities a ∈ [0, 1]."""

    def forward(self, a, y):
        self.a, self.y = a, y
        with np.errstate(divide="ignore"):
            log_a = np.maximum(np.log(a), LOG_FLOOR)
            log_not_a = np.maximum(np.log1p(-a), LOG_FLOOR)
        return -np.mean(y * log_a + (1 - y) * log_not_a)

    def backward(self):
        a, y = self.a, self.y
        return (a - y) / np.maximum(a * (1 - a), BCE_GRAD_FLOOR) / a.size


class BCEWithLogits:
    """On logits a: the sigmoid is part of the loss."""

    def forward(self, a, y):
        self.a, self.y = a, y
        return np.mean(np.maximum(a, 0) - a * y + np.log1p(np.exp(-np.abs(a))))

    def backward(self):
        return (Sigmoid().forward(self.a) - self.y) / self.a.size


class SoftmaxCrossEntropy:
    """On logits a (B, K), one-hot y: mean over rows of -Σ_k y_k log softmax(a)_k."""

    def forward(self, a, y):
        shifted = a - a.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.p, self.y = np.exp(log_p), y
        return np.mean(-np.sum(y * log_p, axis=1))

    def backward(self):
        return (self.p - self.y) / self.y.shape[0]


LOSSES = {
    "mse": MSE,
    "bce": BCE,
    "bce_logits": BCEWithLogits,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
}


# --- optimizers: update(name, θ, g) -> new θ; each keeps its own buffers by name ------------


class SGD:
    buffers = ()

    def __init__(self, config):
        self.lr = config.lr
        self.slots: dict = {}
        self.t = 0

    def begin_step(self):
        self.t += 1

    def update(self, name, theta, g):
        return theta - self.lr * g


class Momentum(SGD):
    buffers = ("momentum",)

    def __init__(self, config):
        super().__init__(config)
        self.mu = config.momentum

    def velocity(self, name, g):
        v = self.mu * self.slots[("momentum", name)] + g
        self.slots[("momentum", name)] = v
        return v

    def update(self, name, theta, g):
        return theta - self.lr * self.velocity(name, g)


class Nesterov(Momentum):
    def update(self, name, theta, g):
        v = self.velocity(name, g)
        return theta - self.lr * (g + self.mu * v)  # the look-ahead step


class Adam(SGD):
    buffers = ("adam_m", "adam_v")

    def __init__(self, config):
        super().__init__(config)
        self.beta1, self.beta2, self.eps = config.beta1, config.beta2, config.eps

    def update(self, name, theta, g):
        m = self.beta1 * self.slots[("adam_m", name)] + (1 - self.beta1) * g
        v = self.beta2 * self.slots[("adam_v", name)] + (1 - self.beta2) * g * g
        self.slots[("adam_m", name)], self.slots[("adam_v", name)] = m, v
        m_hat = m / (1 - self.beta1**self.t)
        v_hat = v / (1 - self.beta2**self.t)
        return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam, "adamw": Adam}


# --- the network, behind the engine contract ----------------------------------------------


class LayeredMLP:
    """Dense and activation layers in a list; ``step`` is forward, loss, backward, update."""

    def __init__(self, mlp, optimizer, dtype):
        self.n = mlp.n_layers
        self.activation_names = [mlp.activation_of(l) for l in range(1, self.n + 1)]
        self.loss = LOSSES[mlp.loss]()
        self.config, self.dtype = optimizer, np.dtype(dtype)
        self.l2, self.decay = optimizer.l2, optimizer.weight_decay
        self.opt = OPTIMIZERS[optimizer.name](optimizer)
        self.counted = optimizer.name in ("adam", "adamw")
        self.dense: list[Dense] = []

    # the contract ---------------------------------------------------------------------------

    def set_state(self, params, opt_state):
        self.dense = [
            Dense(np.array(params[f"W{l}"]), np.array(params[f"b{l}"]))
            for l in range(1, self.n + 1)
        ]
        self.opt.t = int(opt_state["t"])
        self.opt.slots = {
            (kind, p): np.array(opt_state[f"{kind}_{p}"])
            for kind in self.opt.buffers
            for p in self._names()
        }

    def state(self):
        params = {p: theta for p, (theta, _) in zip(self._names(), self._tensors(), strict=True)}
        opt_state = {"t": self.opt.t}
        opt_state.update({f"{kind}_{p}": v for (kind, p), v in self.opt.slots.items()})
        return params, opt_state

    def step(self, X, Y):
        trace = {}
        a = X
        layers = zip(self.dense, self.activation_names, strict=True)
        for l, (layer, name) in enumerate(layers, start=1):
            activation = ACTIVATIONS[name]()
            z = layer.forward(a)
            a = activation.forward(z)
            layer.activation = activation
            trace[f"Z{l}"], trace[f"A{l}"] = z, a
        trace["loss"] = np.asarray(self.loss.forward(a, Y), dtype=self.dtype)

        grad = self.loss.backward()  # ∂loss/∂A_L
        for l in range(self.n, 0, -1):
            layer = self.dense[l - 1]
            dz = layer.activation.backward(grad)
            grad = layer.backward(dz)  # ∂loss/∂A_{l-1}, with W before the update
            trace[f"dZ{l}"], trace[f"dW{l}"], trace[f"db{l}"] = dz, layer.dW, layer.db

        self._update()
        # The update tensors ΔW, Δb are optional in the contract; this engine does not report
        # them (the oracle lists them as "not provided" and never counts them as agreement).
        params, opt_state = self.state()
        if self.counted:
            trace["t"] = np.asarray(opt_state["t"], dtype=np.int64)
        for p in self._names():
            for kind in self.opt.buffers:
                trace[f"{kind}_{p}"] = opt_state[f"{kind}_{p}"]
        trace.update(params)
        return trace

    def predict(self, X):
        a = X
        for layer, name in zip(self.dense, self.activation_names, strict=True):
            a = ACTIVATIONS[name]().forward(layer.forward(a))
        return a

    # inside ---------------------------------------------------------------------------------

    def _names(self):
        return [f"{letter}{l}" for l in range(1, self.n + 1) for letter in "Wb"]

    def _tensors(self):
        """(θ, its gradient) for W1, b1, W2, …, in the order of ``_names``."""
        for layer in self.dense:
            yield layer.W, layer.dW
            yield layer.b, layer.db

    def _update(self):
        """Every parameter once: L2 (weights only) joins the gradient, decoupled decay
        (adamw, weights only) shrinks the weight first, then the optimizer's rule."""
        self.opt.begin_step()
        for layer, l in zip(self.dense, range(1, self.n + 1), strict=True):
            g = layer.dW + self.l2 * layer.W if self.l2 else layer.dW
            W = layer.W - self.config.lr * self.decay * layer.W if self.decay else layer.W
            layer.W = self.opt.update(f"W{l}", W, g)
            layer.b = self.opt.update(f"b{l}", layer.b, layer.db)


def make_engine(mlp, optimizer, dtype):
    """The factory the oracle calls: ``--engine examples.layered_mlp:make_engine``."""
    return LayeredMLP(mlp, optimizer, dtype)
