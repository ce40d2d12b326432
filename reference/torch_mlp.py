"""The scratch MLP rebuilt in PyTorch: ``nn.Linear`` layers, ``torch.nn`` losses, autograd and
``torch.optim``. Nothing here re-implements an equation: every number in a trace is computed
by PyTorch, so that agreeing with scratch means something.

Shape letters: B the batch size, n_l the width of layer l (n_0 inputs, n_L outputs).

Where PyTorch's conventions differ from the textbook forms (scratch follows PyTorch's):

    BCELoss         each log term is clamped below at -100, so a probability of exactly 0 or
                    1 gives a finite loss; its gradient divides by max(A(1 - A), 1e-12).
    SGD momentum    v ← μ·v + g;  θ ← θ - lr·v   (many texts write v ← μ·v - lr·g;  θ ← θ + v,
                    which differs once lr changes, and some damp g by (1 - μ)).
    SGD nesterov    v ← μ·v + g;  θ ← θ - lr·(g + μ·v)   (the gradient is taken at θ, not at
                    the look-ahead point θ - lr·μ·v of Nesterov's original form).
    Adam            θ ← θ - lr·m̂ / (√ŝ + ε): ε is added outside the square root.
    AdamW           θ ← θ·(1 - lr·λ) first, then the Adam step on the decayed θ; the decay is
                    scaled by lr (Loshchilov & Hutter scale it by a separate schedule factor).
    L2 (``l2``)     ``weight_decay`` of SGD and Adam adds λ·θ to the gradient inside the
                    optimizer; ``.grad`` and the loss stay those of the data alone.

Weight decay of either kind touches the weights only: the biases sit in a second parameter
group with ``weight_decay=0``.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from scratch.network import MLP
from scratch.optimizers import Optimizer

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICES = ("cpu", "cuda")

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,  # A = 1 / (1 + exp(-Z))
    "tanh": nn.Tanh,  # A = tanh(Z)
    "relu": nn.ReLU,  # A = max(Z, 0); autograd takes g'(0) = 0
    # A = Z for Z > 0, else 0.01·Z (scratch's LEAKY_RELU_SLOPE); autograd takes g'(0) = 0.01.
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.01),
    "identity": nn.Identity,  # A = Z (the same tensor: ZL and AL are then one node)
}

# Every loss is the mean over the batch, said out loud with reduction="mean".
LOSSES = {
    # (1 / (B·K)) Σ (A - Y)²
    "mse": lambda: nn.MSELoss(reduction="mean"),
    # -(1 / (B·K)) Σ [Y log A + (1 - Y) log(1 - A)], each log clamped below at -100
    "bce": lambda: nn.BCELoss(reduction="mean"),
    # the same on logits, through log σ computed stably (log-sum-exp), without the clamp
    "bce_logits": lambda: nn.BCEWithLogitsLoss(reduction="mean"),
    # -(1 / B) Σ_i Σ_k Y_ik log softmax(A)_ik; a float (B, K) target is read as class
    # probabilities (here one-hot), so the sum over k is explicit and the mean is over B only
    "softmax_cross_entropy": lambda: nn.CrossEntropyLoss(reduction="mean"),
}

# scratch's optimizer-state prefix -> the key torch.optim keeps the same tensor under.
STATE_KEYS = {"momentum": "momentum_buffer", "adam_m": "exp_avg", "adam_v": "exp_avg_sq"}

# Every trace name that holds a (n_{l-1}, n_l) weight-shaped tensor: W1, dW1, ΔW1,
# momentum_W1, adam_m_W1, adam_v_W1. Biases, Z, A, dZ and the loss need no transpose.
_WEIGHT_SHAPED = re.compile(r"(?:d|Δ|momentum_|adam_[mv]_)?W\d+")


def _to_torch(
    name: str, array: np.ndarray, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The canonical array ``name`` as a torch tensor of ``dtype`` on ``device``.

    The one place where the layout changes on the way in: scratch stores ``Wl`` as
    ``(n_{l-1}, n_l)`` so that ``Z = A @ W + b``; ``nn.Linear`` stores its weight as
    ``(n_l, n_{l-1})`` and computes ``Z = A @ weight.T + b``. So weight-shaped tensors are
    transposed here, and nowhere else.

    The result is always a copy: torch.optim updates its state in place, and a tensor
    sharing memory with the caller's array would change that array too.
    """
    tensor = torch.tensor(np.asarray(array), dtype=dtype, device=device)
    if _WEIGHT_SHAPED.fullmatch(name):
        tensor = tensor.T
    return tensor.contiguous()


def _to_canonical(name: str, tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """The torch tensor ``name`` as a fresh NumPy array of ``dtype`` in the canonical layout.

    The one place where the layout changes on the way out (the transpose undone, for the
    reason given in ``_to_torch``). The copy matters: torch.optim updates parameters and
    state in place, so a view would change under the caller's feet.
    """
    tensor = tensor.detach().to("cpu")
    if _WEIGHT_SHAPED.fullmatch(name):
        tensor = tensor.T
    return np.array(tensor.numpy(), dtype=dtype, order="C")


def _choose(kind: str, name: str, table) -> object:
    """``table[name]``, or a ValueError that lists the names there are."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}")
    return table[name]


def _adam_step_dtype() -> torch.dtype:
    """The dtype torch.optim.Adam/AdamW give a fresh ``state["step"]``.

    Without ``capturable`` or ``fused``, Adam keeps the step count as a 0-d CPU tensor whose
    dtype is ``torch.optim.optimizer._get_scalar_dtype()``: float64 when torch's default
    dtype is float64, float32 otherwise. The count only enters as ``β^step`` in Python floats,
    so the dtype is exact for any step below 2**24; matching it keeps a loaded state
    indistinguishable from one torch made itself (the tests check both).
    """
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


# Each optimizer from the parameter groups and scratch's hyperparameters (see the table in
# _make_optimizer's docstring for what each computes).
OPTIMIZERS = {
    "sgd": lambda groups, o: torch.optim.SGD(groups, lr=o.lr),
    "momentum": lambda groups, o: torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum),
    "nesterov": lambda groups, o: torch.optim.SGD(
        groups, lr=o.lr, momentum=o.momentum, nesterov=True
    ),
    "adam": lambda groups, o: torch.optim.Adam(
        groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps
    ),
    "adamw": lambda groups, o: torch.optim.AdamW(
        groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps
    ),
}


def _make_optimizer(
    opt: Optimizer, weights: list[nn.Parameter], biases: list[nn.Parameter]
) -> torch.optim.Optimizer:
    """The torch.optim optimizer that ``opt`` names, with the decay on the weights only.

    sgd       SGD(lr):                      θ ← θ - lr·g
    momentum  SGD(lr, momentum=μ):          v ← μ·v + g;  θ ← θ - lr·v
    nesterov  SGD(..., nesterov=True):      v ← μ·v + g;  θ ← θ - lr·(g + μ·v)
    adam      Adam(lr, (β1, β2), ε):        θ ← θ - lr·m̂ / (√ŝ + ε)
    adamw     AdamW(lr, (β1, β2), ε):       θ ← θ·(1 - lr·λ), then the Adam step

    λ is ``l2`` (added to g by SGD and Adam) or adamw's ``weight_decay``, set per group: the
    weights' group gets λ and the biases' group 0, which also overrides AdamW's default
    ``weight_decay=0.01``.
    """
    make = _choose("optimizer", opt.name, OPTIMIZERS)
    if opt.name in ("momentum", "nesterov") and opt.momentum == 0:
        # torch.optim.SGD keeps no momentum buffer when μ = 0 (and refuses nesterov), so the
        # trace's momentum_* tensors would have no source.
        raise ValueError(f"{opt.name} needs momentum > 0 in torch.optim.SGD; use sgd for μ = 0")
    decay = opt.weight_decay if opt.name == "adamw" else opt.l2
    groups = [
        {"params": weights, "weight_decay": decay},
        {"params": biases, "weight_decay": 0.0},
    ]
    return make(groups, opt)


class TorchMLP:
    """The engine contract of ``reference`` (see its ``__init__``), computed by PyTorch.

    ``model`` is the ``nn.Sequential`` ``Linear, activation, Linear, activation, …`` and
    ``optimizer`` the ``torch.optim`` optimizer; both are public for inspection. The weights
    are only defined after ``set_state``.
    """

    def __init__(
        self, mlp: MLP, optimizer: Optimizer, dtype: str = "float64", device: str = "cpu"
    ) -> None:
        self.mlp, self.opt = mlp, optimizer
        self._torch_dtype = _choose("dtype", str(dtype), DTYPES)
        self.dtype = np.dtype(str(dtype))
        try:
            self.device = torch.device(device)
        except RuntimeError:  # not a device string torch can parse
            self.device = None
        if self.device is None or self.device.type not in DEVICES:
            raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: this torch sees no CUDA GPU")
        if self.device.type == "cuda":
            # On Ampere and later GPUs float32 matmuls may run in TF32 (a 10-bit mantissa),
            # about 1000× the error of true float32; "highest" pins full float32 for cuBLAS.
            # It is a process-wide setting.
            torch.set_float32_matmul_precision("highest")

        layers: list[nn.Module] = []
        for l in range(1, mlp.n_layers + 1):
            # skip_init: no random draw (the weights come from scratch through set_state),
            # and torch's global generator is left untouched.
            layers.append(
                nn.utils.skip_init(
                    nn.Linear,
                    mlp.sizes[l - 1],
                    mlp.sizes[l],
                    dtype=self._torch_dtype,
                    device=self.device,
                )
            )
            layers.append(_choose("activation", mlp.activation_of(l), ACTIVATIONS)())
        self.model = nn.Sequential(*layers)
        linears: list[nn.Linear] = list(self.model[0::2])
        # {"W1": weight of Linear 1, "b1": its bias, …} in the order W1, b1, W2, …: the same
        # Parameter objects for the engine's life (set_state copies into them).
        self._tensors: dict[str, nn.Parameter] = {}
        for l, layer in enumerate(linears, start=1):
            self._tensors[f"W{l}"], self._tensors[f"b{l}"] = layer.weight, layer.bias
        self.loss_fn = _choose("loss", mlp.loss, LOSSES)()
        self.optimizer = _make_optimizer(
            optimizer,
            weights=[layer.weight for layer in linears],
            biases=[layer.bias for layer in linears],
        )
        self._loaded = False

    def _param_tensors(self) -> dict[str, nn.Parameter]:
        """``{"W1": weight of Linear 1, "b1": its bias, …}`` in the order W1, b1, W2, …"""
        return self._tensors

    def _tensor(self, name: str, array: np.ndarray) -> torch.Tensor:
        return _to_torch(name, array, self._torch_dtype, self.device)

    def _require_state(self) -> None:
        if not self._loaded:
            raise RuntimeError("no parameters yet: call set_state(params, opt_state) first")

    def set_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None:
        """Copy canonical ``params`` into the Linear layers and scratch's ``opt_state`` into
        ``optimizer.state``, replacing whatever was there.

        ``momentum_{p}`` becomes torch's ``momentum_buffer``; ``adam_m_{p}`` and ``adam_v_{p}``
        become ``exp_avg`` and ``exp_avg_sq``, and ``opt_state["step"]`` Adam's per-parameter
        ``step``. At step 0 scratch's zeros give what torch's fresh state gives: SGD starts
        its buffer as a copy of g where μ·0 + g = g, and Adam starts from zeros and step 0.
        """
        tensors = self._param_tensors()
        if sorted(params) != sorted(tensors):
            raise ValueError(f"parameters must be {list(tensors)}; got {sorted(params)}")
        wanted = {"step"} | {s for p in tensors for s in self.opt.state_names(p)}
        if not wanted <= set(opt_state):
            raise ValueError(f"optimizer state lacks {sorted(wanted - set(opt_state))}")
        with torch.no_grad():
            for p, tensor in tensors.items():
                value = self._tensor(p, params[p])
                if value.shape != tensor.shape:
                    raise ValueError(
                        f"{p} has shape {np.shape(params[p])}, expected "
                        f"{tuple(_to_canonical(p, tensor, self.dtype).shape)}"
                    )
                tensor.copy_(value)
        self.optimizer.state.clear()
        for p, tensor in tensors.items():
            names = self.opt.state_names(p)
            if not names:
                continue
            state = {STATE_KEYS[s[: -len(p) - 1]]: self._tensor(s, opt_state[s]) for s in names}
            if self.opt.name in ("adam", "adamw"):
                state["step"] = torch.tensor(
                    float(opt_state["step"]), dtype=_adam_step_dtype(), device="cpu"
                )
            self.optimizer.state[tensor] = state
        self._loaded = True

    def step(self, X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
        """One training step on ``X: (B, n_0)``, ``Y: (B, n_L)``; returns scratch's trace.

        forward   Z_l = Linear_l(A_{l-1}),  A_l = activation_l(Z_l)       (B, n_l)
        loss      the loss module on (A_L, Y), mean over the batch        ()
        backward  ``loss.backward()``: dZ_l from ``retain_grad`` on Z_l   (B, n_l),
                  dW_l, db_l from the parameters' ``.grad``
        update    ``optimizer.step()``; ΔW_l = new - old, both canonical, then the
                  optimizer's state and the new parameters
        """
        self._require_state()
        L = self.mlp.n_layers
        tensors = self._param_tensors()
        before = {p: _to_canonical(p, t, self.dtype) for p, t in tensors.items()}
        self.optimizer.zero_grad(set_to_none=True)  # no gradient left from a previous step

        trace: dict[str, np.ndarray] = {}
        Zs: list[torch.Tensor] = []
        A = self._tensor("X", X)  # (B, n_0)
        for l in range(1, L + 1):
            Z = self.model[2 * l - 2](A)  # (B, n_l)
            Z.retain_grad()  # keep ∂loss/∂Z_l, the error term, which autograd would free
            A = self.model[2 * l - 1](Z)  # (B, n_l)
            Zs.append(Z)
            trace[f"Z{l}"] = _to_canonical(f"Z{l}", Z, self.dtype)
            trace[f"A{l}"] = _to_canonical(f"A{l}", A, self.dtype)
        loss = self.loss_fn(A, self._tensor("Y", Y))
        trace["loss"] = _to_canonical("loss", loss, self.dtype)

        loss.backward()
        for l in range(L, 0, -1):
            trace[f"dZ{l}"] = _to_canonical(f"dZ{l}", Zs[l - 1].grad, self.dtype)
            trace[f"dW{l}"] = _to_canonical(f"dW{l}", tensors[f"W{l}"].grad, self.dtype)
            trace[f"db{l}"] = _to_canonical(f"db{l}", tensors[f"b{l}"].grad, self.dtype)

        self.optimizer.step()
        after = self.params()
        for p in tensors:
            trace[f"Δ{p}"] = after[p] - before[p]
        for p, tensor in tensors.items():
            for s in self.opt.state_names(p):
                key = STATE_KEYS[s[: -len(p) - 1]]
                trace[s] = _to_canonical(s, self.optimizer.state[tensor][key], self.dtype)
        trace.update(after)
        return trace

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A_L = model(X)   (n, n_L), under ``torch.no_grad`` (no graph is built)."""
        self._require_state()
        with torch.no_grad():
            A_L = self.model(self._tensor("X", X))
        return _to_canonical(f"A{self.mlp.n_layers}", A_L, self.dtype)

    def params(self) -> dict[str, np.ndarray]:
        """The current parameters ``W1, b1, …`` as canonical NumPy copies."""
        self._require_state()
        return {p: _to_canonical(p, t, self.dtype) for p, t in self._param_tensors().items()}
