"""A multilayer perceptron with backprop, written the way many courses teach it: layer objects.

A layer's ``forward(x)`` keeps what its backward pass needs and ``backward(grad)`` takes
∂loss/∂(its output) and returns ∂loss/∂(its input); a loss's ``forward(A, Y)`` returns the
batch's mean loss and ``backward()`` ∂loss/∂A; an optimizer keeps its own buffers and step
count and updates the Dense layers' W and b.

Nothing here comes from this project: it imports NumPy only and reads two plain configuration
objects through their attributes. It is plugged into the oracle through the public engine
contract by the factory ``make_engine``::

    python -m comparisons check --engine examples.layered_mlp:make_engine

Shapes: a row is one example. B the batch size; a Dense layer maps (B, n_in) to (B, n_out)
with W (n_in, n_out) and b (n_out,). Layers are numbered l = 1..L; A_0 = X.
"""

from __future__ import annotations

import numpy as np

LEAKY_SLOPE = 0.01  # leaky_relu's slope below 0 (PyTorch's and JAX's default)
ELU_ALPHA = 1.0  # elu's α (PyTorch's and JAX's default)
LOG_FLOOR = -100.0  # binary cross-entropy clamps each log here, as PyTorch's BCELoss does
BCE_GRAD_FLOOR = 1e-12  # ... and floors A(1 - A) in its gradient
# Constants and hyperparameters are Python floats, which NumPy treats as "weak": a float32
# array times a Python float stays float32, so a float32 run is float32 throughout.


# --- the affine layer ------------------------------------------------------------------------


class Dense:
    """Z = X @ W + b (Z = X @ W without a bias: before batch normalization)."""

    def __init__(self, n_in: int, n_out: int, dtype, bias: bool = True):
        self.W = np.zeros((n_in, n_out), dtype=dtype)  # set_state fills W and b in
        self.b = np.zeros(n_out, dtype=dtype) if bias else None
        self.db = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x  # (B, n_in): the input, kept for dW
        return x @ self.W if self.b is None else x @ self.W + self.b  # (B, n_out)

    def backward(self, dz: np.ndarray) -> np.ndarray:
        """From dZ = ∂loss/∂Z (B, n_out):
        dW = Xᵀ dZ (n_in, n_out);  db = Σ over the batch of dZ (n_out,);
        returns dX = dZ Wᵀ (B, n_in), with W as it was in forward (before any update)."""
        self.dW = self.x.T @ dz
        if self.b is not None:  # no bias before batch normalization
            self.db = dz.sum(axis=0)
        return dz @ self.W.T


# --- dropout: D = A·M/(1 - p) forward, with the step's keep mask M given; back the same way --


class Dropout:
    """Inverted dropout: each unit's output times M/(1 - p), M the step's mask of 0s and 1s
    (given by the caller, the same in every engine), so the expected output is A and the
    network is evaluated without it;  dA = dD·M/(1 - p)."""

    def __init__(self, rate: float):
        self.rate = float(rate)

    def forward(self, a: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.scale = mask / (1 - self.rate)  # (B, n): 0 where dropped, 1/(1 - p) where kept
        return a * self.scale

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad * self.scale


# --- batch normalization: over the batch's rows, per unit -------------------------------------


class BatchNorm:
    """In training: mu = mean(z), var = mean((z - mu)²), x̂ = (z - mu)/√(var + ε),
    y = γ·x̂ + β, and the running statistics move toward the batch's (PyTorch's convention: m
    weighs the batch's, the variance kept is unbiased, × B/(B - 1)). In evaluation,
    y = γ·(z - running mean)/√(running var + ε) + β. Backward, in the compact form:
    dz = γ/(B·√(var + ε))·(B·dy - Σ dy - x̂·Σ(dy·x̂)), every row's through every row's."""

    def __init__(self, n: int, momentum: float, eps: float, dtype):
        self.gamma, self.beta = np.ones(n, dtype=dtype), np.zeros(n, dtype=dtype)
        self.running_mean, self.running_var = np.zeros(n, dtype=dtype), np.ones(n, dtype=dtype)
        self.momentum, self.eps = float(momentum), float(eps)

    def forward(self, z: np.ndarray) -> np.ndarray:
        B, m = len(z), self.momentum
        self.mu = z.mean(axis=0)  # (n,)
        self.var = ((z - self.mu) ** 2).mean(axis=0)  # (n,), biased
        self.inv_std = 1 / np.sqrt(self.var + self.eps)
        self.xhat = (z - self.mu) * self.inv_std  # (B, n)
        self.running_mean = (1 - m) * self.running_mean + m * self.mu
        self.running_var = (1 - m) * self.running_var + m * self.var * (B / (B - 1))
        return self.gamma * self.xhat + self.beta

    def backward(self, dy: np.ndarray) -> np.ndarray:
        B = len(dy)
        self.dgamma = (dy * self.xhat).sum(axis=0)
        self.dbeta = dy.sum(axis=0)
        return self.gamma * self.inv_std / B * (B * dy - self.dbeta - self.xhat * self.dgamma)

    def evaluate(self, z: np.ndarray) -> np.ndarray:
        scale = self.gamma / np.sqrt(self.running_var + self.eps)
        return (z - self.running_mean) * scale + self.beta


# --- activations: A = g(Z) forward; dZ = dA * g'(Z) backward, elementwise ------------------


class Sigmoid:
    """g(z) = 1 / (1 + e^-z);  g'(z) = g(z)(1 - g(z))."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        # 1 / (1 + e^-z) for z ≥ 0 and e^z / (1 + e^z) below: exp never sees a positive
        # argument, so it cannot overflow
        e = np.exp(-np.abs(z))
        self.a = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype)
        return self.a

    def backward(self, da: np.ndarray) -> np.ndarray:
        # g'(z) first, then dA * g'(z): at saturation in float32, 1 - a is a few ulps, and the
        # other association rounds differently enough for Adam (which divides g by √v) to see
        return da * (self.a * (1 - self.a))


class Tanh:
    """g(z) = tanh z;  g'(z) = 1 - tanh² z."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.a = np.tanh(z)
        return self.a

    def backward(self, da: np.ndarray) -> np.ndarray:
        return da * (1 - self.a**2)


class ReLU:
    """g(z) = max(z, 0);  g'(z) = 1 where z > 0, else 0 (0 at z = 0, as PyTorch takes it)."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.positive = z > 0
        return np.where(self.positive, z, 0).astype(z.dtype)

    def backward(self, da: np.ndarray) -> np.ndarray:
        return np.where(self.positive, da, 0).astype(da.dtype)


class LeakyReLU:
    """g(z) = z where z > 0, else s·z;  g'(z) = 1 where z > 0, else s (s at z = 0)."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.positive = z > 0
        return np.where(self.positive, z, LEAKY_SLOPE * z).astype(z.dtype)

    def backward(self, da: np.ndarray) -> np.ndarray:
        return np.where(self.positive, da, LEAKY_SLOPE * da).astype(da.dtype)


class ELU:
    """g(z) = z where z > 0, else α(e^z - 1);  g'(z) = 1 where z > 0, else α·e^z."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.negative = np.minimum(z, 0)  # e^z of the negative side only: no overflow
        return np.where(z > 0, z, ELU_ALPHA * np.expm1(self.negative)).astype(z.dtype)

    def backward(self, da: np.ndarray) -> np.ndarray:
        return (da * np.where(self.negative < 0, ELU_ALPHA * np.exp(self.negative), 1)).astype(
            da.dtype
        )


class Identity:
    """g(z) = z;  g'(z) = 1 (the output layer of a loss that works on logits)."""

    def forward(self, z: np.ndarray) -> np.ndarray:
        return z

    def backward(self, da: np.ndarray) -> np.ndarray:
        return da


ACTIVATIONS = {
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "identity": Identity,
}


# --- losses: forward(A, Y) -> the mean over the batch; backward() -> dA = ∂loss/∂A (B, K) ----
# MSE and both binary cross-entropies average over all B·K entries; softmax cross-entropy
# sums over the K classes of a row and averages over the B rows (PyTorch's "mean").


class MSE:
    """loss = Σ (A - Y)² / (B·K);  dA = 2 (A - Y) / (B·K)."""

    def forward(self, a, y):
        self.diff = a - y
        return np.mean(self.diff * self.diff)

    def backward(self):
        return 2 * self.diff / self.diff.size


class BCE:
    """On probabilities A (a sigmoid output), each log clamped below at -100:
    loss = -Σ [Y log A + (1 - Y) log(1 - A)] / (B·K);
    dA = (A - Y) / max(A (1 - A), 1e-12) / (B·K)."""

    def forward(self, a, y):
        self.a, self.y = a, y
        with np.errstate(divide="ignore"):  # log 0 = -inf, then clamped to the floor
            log_a = np.maximum(np.log(a), LOG_FLOOR)
            log_not_a = np.maximum(np.log1p(-a), LOG_FLOOR)
        return -np.mean(y * log_a + (1 - y) * log_not_a)

    def backward(self):
        a, y = self.a, self.y
        return (a - y) / np.maximum(a * (1 - a), BCE_GRAD_FLOOR) / a.size


class BCEWithLogits:
    """On logits A (the sigmoid is part of the loss), in the form that never overflows:
    loss = Σ [max(A, 0) - A·Y + log(1 + e^-|A|)] / (B·K);  dA = (σ(A) - Y) / (B·K)."""

    def forward(self, a, y):
        self.a, self.y = a, y
        return np.mean(np.maximum(a, 0) - a * y + np.log1p(np.exp(-np.abs(a))))

    def backward(self):
        return (Sigmoid().forward(self.a) - self.y) / self.a.size


class SoftmaxCrossEntropy:
    """On logits A (B, K), Y one-hot: loss = -(1/B) Σ_rows Σ_k Y_k log softmax(A)_k;
    dA = (softmax(A) - Y) / B. Each row is shifted by its max first: exp cannot overflow."""

    def forward(self, a, y):
        shifted = a - a.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        self.p, self.y = e / total, y  # softmax(A)
        log_p = shifted - np.log(total)  # log softmax(A)
        return np.mean(-np.sum(y * log_p, axis=1))

    def backward(self):
        return (self.p - self.y) / self.y.shape[0]


LOSSES = {
    "mse": MSE,
    "bce": BCE,
    "bce_logits": BCEWithLogits,
    "softmax_cross_entropy": SoftmaxCrossEntropy,
}


# --- optimizers: each keeps its own buffers, per parameter name, and its step count t ------


class SGD:
    """θ ← θ - lr·g.

    Every optimizer takes L2 regularization the same way, on the weights only (never the
    biases): g ← g + l2·W before its rule, the gradient of (l2/2)·‖W‖². Before that, with
    clip_norm c > 0, every gradient is scaled by min(1, c / (‖g‖ + 1e-6)), ‖g‖ the norm of
    all of them together (PyTorch's clip_grad_norm_). The layers' dW keep the data loss's
    gradient alone. With lr_schedule "step" the t-th update's lr is lr·γ^⌊(t - 1) / s⌋; with
    "cosine", lr·t/(w + 1) for the first w, then a half cosine from lr down to lr_min."""

    slots: tuple[str, ...] = ()  # the buffers kept per parameter

    def __init__(self, config):
        self.base_lr, self.l2 = float(config.lr), float(config.l2)
        self.lr = self.base_lr  # the learning rate of the current update
        self.schedule = config.lr_schedule  # "constant", "step" or "cosine"
        self.step_size, self.gamma = int(config.lr_step_size), float(config.lr_gamma)
        self.warmup, self.lr_min = int(config.lr_warmup), float(config.lr_min)
        self.decay_steps = int(config.lr_decay_steps)
        self.clip_norm = float(config.clip_norm)
        self.norm = None  # ‖g‖ before clipping, at the last step (when clipping)
        self.t = 0  # steps taken
        self.buffers: dict[str, dict[str, np.ndarray]] = {}  # {"W1": {"momentum": v}, …}

    def step(self, params: list[tuple[str, object, str]]) -> None:
        """One update of every parameter (new arrays: nothing is changed in place).
        ``params`` lists (name, layer, attribute): ("W1", Dense 1, "W") is Dense 1's W, its
        gradient the layer's ``dW``; batch normalization's gamma and beta likewise."""
        self.t += 1  # t = 1 at the first step
        if self.schedule == "step":  # lr·γ every step_size updates: lr·γ^⌊(t - 1) / s⌋
            self.lr = self.base_lr * self.gamma ** ((self.t - 1) // self.step_size)
        elif self.schedule == "cosine":  # warm up linearly, then down a half cosine
            done, w = self.t - 1, self.warmup  # updates before this one
            if done < w:
                self.lr = self.base_lr * (done + 1) / (w + 1)
            else:
                # a Python float, which NumPy casts to a float32 array's dtype (a NumPy
                # float64 scalar would turn float32 weights into float64: the oracle said so)
                half = 0.5 * (1 + float(np.cos(np.pi * (done - w) / (self.decay_steps - w))))
                self.lr = self.lr_min + (self.base_lr - self.lr_min) * half
        scale = 1.0
        grads = [getattr(layer, "d" + attr) for _, layer, attr in params]
        if self.clip_norm:
            self.norm = np.sqrt(sum(np.sum(g * g) for g in grads))
            scale = min(1.0, self.clip_norm / (self.norm + 1e-6))
        for (name, layer, attr), g in zip(params, grads, strict=True):
            theta, g = getattr(layer, attr), g * scale
            if attr == "W":  # L2 and decay touch the weights only
                g = g + self.l2 * theta if self.l2 else g
                theta = self.decay(theta)
            setattr(layer, attr, self.rule(name, theta, g))

    def decay(self, W: np.ndarray) -> np.ndarray:
        return W  # only AdamW shrinks the weights before its rule

    def rule(self, p: str, theta: np.ndarray, g: np.ndarray) -> np.ndarray:
        return theta - self.lr * g


class Momentum(SGD):
    """v ← μ·v + g;  θ ← θ - lr·v   (PyTorch's form: lr multiplies the velocity)."""

    slots = ("momentum",)

    def __init__(self, config):
        super().__init__(config)
        self.mu = float(config.momentum)

    def velocity(self, p: str, g: np.ndarray) -> np.ndarray:
        v = self.mu * self.buffers[p]["momentum"] + g
        self.buffers[p]["momentum"] = v
        return v

    def rule(self, p, theta, g):
        return theta - self.lr * self.velocity(p, g)


class Nesterov(Momentum):
    """v ← μ·v + g;  θ ← θ - lr·(g + μ·v)   (PyTorch's look-ahead form)."""

    def rule(self, p, theta, g):
        v = self.velocity(p, g)
        return theta - self.lr * (g + self.mu * v)


class Adam(SGD):
    """m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;
    m̂ = m / (1 - β1^t);  v̂ = v / (1 - β2^t);  θ ← θ - lr·m̂ / (√v̂ + ε)."""

    slots = ("adam_m", "adam_v")

    def __init__(self, config):
        super().__init__(config)
        self.beta1, self.beta2 = float(config.beta1), float(config.beta2)
        self.eps = float(config.eps)

    def rule(self, p, theta, g):
        state = self.buffers[p]
        m = self.beta1 * state["adam_m"] + (1 - self.beta1) * g
        v = self.beta2 * state["adam_v"] + (1 - self.beta2) * g * g
        state["adam_m"], state["adam_v"] = m, v
        m_hat = m / (1 - self.beta1**self.t)  # bias corrections: m and v start at 0
        v_hat = v / (1 - self.beta2**self.t)
        return theta - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """Decoupled weight decay λ, on the weights only: W ← W - lr·λ·W, then Adam's rule
    (with the gradient untouched by λ, unlike L2)."""

    def __init__(self, config):
        super().__init__(config)
        self.weight_decay = float(config.weight_decay)

    def decay(self, W):
        return W - self.lr * self.weight_decay * W if self.weight_decay else W


class RMSprop(SGD):
    """v ← α·v + (1-α)·g²;  θ ← θ - lr·g / (√v + ε)   (PyTorch's RMSprop: ε outside the
    root, v from 0, no bias correction, not centered, no momentum)."""

    slots = ("rmsprop_v",)

    def __init__(self, config):
        super().__init__(config)
        self.alpha, self.eps = float(config.alpha), float(config.eps)

    def rule(self, p, theta, g):
        state = self.buffers[p]
        v = state["rmsprop_v"] = self.alpha * state["rmsprop_v"] + (1 - self.alpha) * g * g
        return theta - self.lr * g / (np.sqrt(v) + self.eps)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
}
COUNTED = ("adam", "adamw")  # the optimizers whose rule reads t, so the trace reports it


# --- the network, behind the engine contract ----------------------------------------------


class LayeredMLP:
    """[Dense, activation] pairs in a list; ``step`` is forward, loss, backward, update."""

    def __init__(self, mlp, optimizer, dtype):
        self.dtype = np.dtype(dtype)
        self.L = mlp.n_layers
        n = mlp.sizes
        normalized = [mlp.batch_norm and l < self.L for l in range(self.L + 1)]
        self.layers = [  # layer l at index l - 1: (its Dense, its activation)
            (
                Dense(n[l - 1], n[l], self.dtype, bias=not normalized[l]),
                ACTIVATIONS[mlp.activation_of(l)](),
            )
            for l in range(1, self.L + 1)
        ]
        self.dense = [dense for dense, _ in self.layers]
        # hidden layer l's batch normalization, between its Dense and its activation
        bn = (mlp.bn_momentum, mlp.bn_eps, self.dtype) if mlp.batch_norm else None
        self.norms = {l: BatchNorm(n[l], *bn) for l in range(1, self.L)} if bn else {}
        # one dropout per hidden layer (l = 1..L-1), with dropout; evaluation runs without
        self.drops = [Dropout(mlp.dropout) for _ in range(self.L - 1)] if mlp.dropout else []
        self.loss = LOSSES[mlp.loss]()
        self.optimizer = OPTIMIZERS[optimizer.name](optimizer)
        self.counted = optimizer.name in COUNTED
        self.params = []  # (name, layer, attribute), in the order W1, b1, (gamma1, beta1,) W2, …
        for l, dense in enumerate(self.dense, start=1):
            self.params += [(f"W{l}", dense, "W")]
            self.params += [(f"b{l}", dense, "b")] if dense.b is not None else []
            if l in self.norms:
                self.params += [(f"gamma{l}", self.norms[l], "gamma")]
                self.params += [(f"beta{l}", self.norms[l], "beta")]
        self.names = [name for name, _, _ in self.params]
        self.running = [  # the running statistics, kept in the state
            (f"{attr}{l}", norm, attr)
            for l, norm in self.norms.items()
            for attr in ("running_mean", "running_var")
        ]

    # the contract ---------------------------------------------------------------------------

    def set_state(self, params, opt_state):
        """Start from copies of ``params`` and ``opt_state`` (the caller's arrays may be
        read-only; they are never written to)."""
        for name, layer, attr in self.params:
            setattr(layer, attr, np.array(params[name], dtype=self.dtype))  # np.array copies
        for name, norm, attr in self.running:
            setattr(norm, attr, np.array(opt_state[name], dtype=self.dtype))
        self.optimizer.t = int(opt_state["t"])
        slots = self.optimizer.slots
        self.optimizer.buffers = {
            p: {s: np.array(opt_state[f"{s}_{p}"], dtype=self.dtype) for s in slots}
            for p in self.names
        }

    def state(self):
        """(params, opt_state) the next step starts from: copies, for the caller to keep."""
        params = {name: getattr(layer, attr).copy() for name, layer, attr in self.params}
        opt_state = {"t": self.optimizer.t}
        opt_state.update({name: getattr(n, attr).copy() for name, n, attr in self.running})
        for p in self.names:  # per parameter, in the order W1, b1, W2, …
            for s in self.optimizer.slots:
                opt_state[f"{s}_{p}"] = self.optimizer.buffers[p][s].copy()
        return params, opt_state

    def step(self, X, Y, masks=None):
        """One training step on the batch (with dropout, ``masks`` holds each hidden layer's
        keep mask for this step, ``{"M1": (B, n_1), …}``); returns its trace."""
        X, Y = np.asarray(X, dtype=self.dtype), np.asarray(Y, dtype=self.dtype)
        trace = {}

        # forward: Z_l = A_{l-1} @ W_l + b_l,  A_l = g_l(Z_l), and through each hidden
        # layer's dropout: D_l = A_l·M_l/(1 - p), which the next layer reads
        a = X
        for l, (layer, activation) in enumerate(self.layers, start=1):
            z = trace[f"Z{l}"] = layer.forward(a)
            if l in self.norms:  # N_l = BN(Z_l), which the activation reads
                norm = self.norms[l]
                z = trace[f"N{l}"] = norm.forward(z)
                trace.update({f"mu{l}": norm.mu, f"var{l}": norm.var, f"xhat{l}": norm.xhat})
                trace[f"running_mean{l}"] = norm.running_mean
                trace[f"running_var{l}"] = norm.running_var
            a = trace[f"A{l}"] = activation.forward(z)
            if self.drops and l < self.L:
                mask = np.asarray(masks[f"M{l}"], dtype=self.dtype)
                a = self.drops[l - 1].forward(a, mask)
                trace[f"M{l}"], trace[f"D{l}"] = mask, a
        trace["loss"] = np.asarray(self.loss.forward(a, Y), dtype=self.dtype)

        # backward: dA_L from the loss; then for l = L..1:  dZ_l = dA_l * g_l'(Z_l),
        #   dW_l = A_{l-1}ᵀ dZ_l,  db_l = Σ_rows dZ_l,  dA_{l-1} = dZ_l W_lᵀ (which below
        #   the top is ∂loss/∂D_{l-1} with dropout: back through it first)
        grad = self.loss.backward()
        for l in range(self.L, 0, -1):
            layer, activation = self.layers[l - 1]
            if self.drops and l < self.L:
                grad = self.drops[l - 1].backward(grad)
            dz = activation.backward(grad)
            if l in self.norms:  # back through the batch normalization (compact form)
                norm = self.norms[l]
                trace[f"dN{l}"] = dz
                dz = norm.backward(dz)
                trace[f"dgamma{l}"], trace[f"dbeta{l}"] = norm.dgamma, norm.dbeta
            grad = layer.backward(dz)
            trace[f"dZ{l}"], trace[f"dW{l}"] = dz, layer.dW
            if layer.db is not None:
                trace[f"db{l}"] = layer.db

        # update: every W and b, by the optimizer's rule (after clipping, if it clips)
        self.optimizer.step(self.params)
        if self.optimizer.norm is not None:
            trace["grad_norm"] = np.asarray(self.optimizer.norm, dtype=self.dtype)
        if self.optimizer.schedule != "constant":
            trace["lr"] = np.asarray(self.optimizer.lr, dtype=self.dtype)

        # The update tensors ΔW1, Δb1, … are optional in the contract and this engine leaves
        # them out on purpose: the oracle reports them as "not provided" (never as agreement).
        params, opt_state = self.state()
        if self.counted:
            trace["t"] = np.asarray(opt_state["t"], dtype=np.int64)  # t after the step
        trace.update({name: value for name, value in opt_state.items() if name != "t"})
        trace.update(params)  # the new parameters
        return trace

    def predict(self, X):
        """A_L, the network's output for X, with the current parameters."""
        a = np.asarray(X, dtype=self.dtype)
        for l, (layer, activation) in enumerate(self.layers, start=1):
            z = layer.forward(a)  # evaluation: no dropout, batch norm's running statistics
            a = activation.forward(self.norms[l].evaluate(z) if l in self.norms else z)
        return a


def make_engine(mlp, optimizer, dtype):
    """The factory the oracle calls: ``--engine examples.layered_mlp:make_engine``."""
    return LayeredMLP(mlp, optimizer, dtype)
