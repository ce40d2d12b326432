"""The PyTorch reference behind the engine contract (``reference/__init__.py``): scratch's
layout and state in, the trace out. The model and its step are in ``torch_mlp.py``.

The one layout conversion: scratch stores ``Wl`` as ``(n_{l-1}, n_l)`` so that
``Z = A @ W + b``; ``nn.Linear`` stores its weight as ``(n_l, n_{l-1})`` and computes
``Z = A @ weight.T + b``. So every weight-shaped tensor (the trace schema says which) is
transposed in ``to_torch`` and ``to_canonical``, and nowhere else.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from reference.torch_mlp import (
    KEEPS_STEP,
    LOSSES,
    STATE_KEYS,
    batch_norms,
    choose,
    make_model,
    make_optimizer,
    make_scheduler,
    named_parameters,
    train_step,
)
from scratch.config import MLP, Optimizer
from scratch.trace_schema import (
    COUNTED,
    OPTIMIZER_STATE,
    STATE,
    is_weight_shaped,
    names_of,
    running_names,
    state_names,
)

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICES = ("cpu", "cuda")


def to_torch(
    name: str, array: np.ndarray, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The canonical array ``name`` as a torch tensor of ``dtype`` on ``device``, transposed
    if weight-shaped. Always a copy: torch.optim updates its state in place, and a tensor
    sharing memory with the caller's array would change that array too."""
    tensor = torch.tensor(np.asarray(array), dtype=dtype, device=device)
    if is_weight_shaped(name):
        tensor = tensor.T
    return tensor.contiguous()


def to_canonical(name: str, tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """The torch tensor ``name`` as a fresh NumPy array of ``dtype``, scratch's layout. The
    copy matters: torch.optim updates parameters and state in place, so a view would change
    under the caller's feet."""
    tensor = tensor.detach().to("cpu")
    if is_weight_shaped(name):
        tensor = tensor.T
    return np.array(tensor.numpy(), dtype=dtype, order="C")


def load_into(tensor: torch.Tensor, name: str, array: np.ndarray) -> None:
    """The canonical array ``name`` copied into ``tensor`` in place (transposed if
    weight-shaped): on the CPU one copy, nothing allocated; elsewhere through a host copy."""
    value = np.asarray(array)
    if is_weight_shaped(name):
        value = value.T
    if tuple(value.shape) != tuple(tensor.shape):
        shape = tuple(reversed(tensor.shape)) if is_weight_shaped(name) else tuple(tensor.shape)
        raise ValueError(f"{name} has shape {np.shape(array)}, expected {shape}")
    if tensor.device.type == "cpu":
        tensor.detach().numpy()[...] = value
    else:
        # from a private copy: a read-only array (np.load's, the oracle's) cannot be wrapped
        # without torch's warning that writing through it is undefined
        tensor.copy_(torch.from_numpy(np.array(value, order="C")))


def to_canonical_all(names: list[str], tensors: list[torch.Tensor]) -> list[np.ndarray]:
    """``to_canonical`` for many tensors of one dtype at once: one concatenation on torch's
    side (in torch's layout), one fresh array on NumPy's, and each tensor a view of it in
    scratch's layout (a weight-shaped one is the transposed view of torch's)."""
    with torch.no_grad():
        flat = torch.cat([t.reshape(-1) for t in tensors]).to("cpu").numpy()
    out, start = [], 0
    for name, t in zip(names, tensors, strict=True):
        view = flat[start : start + t.numel()].reshape(tuple(t.shape))
        out.append(view.T if is_weight_shaped(name) else view)
        start += t.numel()
    return out


def torch_device(device: str) -> torch.device:
    """``device`` ("cpu" or "cuda") checked; on CUDA, float32 matmuls pinned to full float32."""
    try:
        parsed = torch.device(device)
    except RuntimeError:  # not a device string torch can parse
        parsed = None
    if parsed is None or parsed.type not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this torch sees no CUDA GPU")
    if parsed.type == "cuda":
        # On Ampere and later GPUs float32 matmuls may run in TF32 (a 10-bit mantissa),
        # about 1000× the error of true float32; "highest" pins full float32 for cuBLAS.
        # It is a process-wide setting.
        torch.set_float32_matmul_precision("highest")
    return parsed


class TorchEngine:
    """scratch's MLP and optimizer in PyTorch; the engine contract of ``reference``.

    ``model`` (the ``nn.Sequential``), ``loss_fn`` and ``optimizer`` (``torch.optim``) are
    public for inspection. The weights are only defined after ``set_state``.
    """

    name = "torch"

    def __init__(
        self, mlp: MLP, optimizer: Optimizer, dtype: str = "float64", device: str = "cpu"
    ) -> None:
        self.mlp, self.opt = mlp, optimizer
        self._torch_dtype = choose("dtype", str(dtype), DTYPES)
        self.dtype = np.dtype(str(dtype))
        self.device = torch_device(device)
        self.model = make_model(mlp, self._torch_dtype, self.device)
        self.loss_fn = choose("loss", mlp.loss, LOSSES)()
        self.optimizer = make_optimizer(optimizer, self.model)
        self.scheduler = make_scheduler(optimizer, self.optimizer)
        self._params = named_parameters(self.model)
        # where each step keeps the parameters before its update, for Δ (reused: no allocation)
        self._before = {p: t.detach().clone() for p, t in self._params.items()}
        self._norms = batch_norms(self.model)  # layer -> its BatchNorm1d
        self._running = running_names(mlp.n_layers, mlp.batch_norm)
        self._kept = OPTIMIZER_STATE[optimizer.name]
        self._trace_names = names_of(mlp, optimizer)
        self._floats = [n for n in self._trace_names if n != "t"]  # NumPy by _canonical
        self._loaded = False
        self._t = 0  # steps taken (the trace's t where torch.optim keeps no count)

    def _tensor(self, name: str, array: np.ndarray) -> torch.Tensor:
        return to_torch(name, array, self._torch_dtype, self.device)

    def set_state(self, params: dict[str, np.ndarray], opt_state: dict) -> None:
        """Copy canonical ``params`` into the Linear layers, and scratch's ``opt_state``
        into the optimizer, replacing whatever was there: through ``load_state_dict`` the
        first time, then into the same tensors in place (the state stays resident, as in a
        training loop; nothing is rebuilt).

        ``momentum_{p}`` becomes torch's ``momentum_buffer``; ``adam_m_{p}`` and ``adam_v_{p}``
        become ``exp_avg`` and ``exp_avg_sq``, ``rmsprop_v_{p}`` ``square_avg``, and
        ``opt_state["t"]`` the ``step`` of Adam and RMSprop. At
        step 0 scratch's zeros give what torch's fresh state gives: SGD starts its buffer as
        a copy of g where μ·0 + g = g, and Adam starts from zeros and step 0.
        """
        if sorted(params) != sorted(self._params):
            raise ValueError(f"parameters must be {list(self._params)}; got {sorted(params)}")
        wanted = {"t", *self._running}
        wanted |= {s for p in self._params for s in state_names(self.opt.name, p)}
        if not wanted <= set(opt_state):
            raise ValueError(f"optimizer state lacks {sorted(wanted - set(opt_state))}")
        with torch.no_grad():
            for p, tensor in self._params.items():
                load_into(tensor, p, params[p])
            for l, norm in self._norms.items():  # BatchNorm1d's running statistics
                load_into(norm.running_mean, f"running_mean{l}", opt_state[f"running_mean{l}"])
                load_into(norm.running_var, f"running_var{l}", opt_state[f"running_var{l}"])
            if not self._kept and self.opt.name not in KEEPS_STEP:
                pass  # plain SGD keeps no state
            elif self._resident():
                self._load_state_in_place(opt_state)
            else:
                self.optimizer.load_state_dict(self._state_dict(opt_state))
        self._schedule_at(int(opt_state["t"]))
        self._t = int(opt_state["t"])  # the count of an optimizer whose state keeps none
        self._loaded = True

    def _schedule_at(self, t: int) -> None:
        """The scheduler at the state after ``t`` updates. It computes each lr from the last
        one (torch's chainable form), so it is kept running: lockstep and a free run load
        each step's t in order and nothing is done. At any other t it starts again from the
        first lr and steps t times (the replay steps it without an optimizer step, which
        torch warns about: that warning alone is silenced)."""
        if self.scheduler is None or self.scheduler.last_epoch == t:
            return
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        self.scheduler = make_scheduler(self.opt, self.optimizer)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            for _ in range(t):
                self.scheduler.step()

    def _resident(self) -> bool:
        """Whether torch.optim already holds a state of scratch's shape for every parameter."""
        keys = {STATE_KEYS[s] for s in self._kept}
        return bool(keys) and all(
            keys <= set(self.optimizer.state.get(t, {})) for t in self._params.values()
        )

    def _load_state_in_place(self, opt_state: dict) -> None:
        for p, tensor in self._params.items():
            state = self.optimizer.state[tensor]
            for s, name in zip(self._kept, state_names(self.opt.name, p), strict=True):
                load_into(state[STATE_KEYS[s]], name, opt_state[name])
            if self.opt.name in KEEPS_STEP:
                state["step"].fill_(float(opt_state["t"]))

    def _state_dict(self, opt_state: dict) -> dict:
        """scratch's optimizer state as a ``torch.optim`` state dict (state keyed by each
        parameter's position in the parameter groups)."""
        position = {
            id(t): i
            for i, t in enumerate(t for g in self.optimizer.param_groups for t in g["params"])
        }
        state = {}
        for p, tensor in self._params.items():
            names = dict(zip(self._kept, state_names(self.opt.name, p), strict=True))
            if not names:
                continue
            entry = {STATE_KEYS[s]: self._tensor(n, opt_state[n]) for s, n in names.items()}
            if self.opt.name in KEEPS_STEP:
                # A 0-d CPU tensor of torch's default dtype, as Adam makes its own count.
                entry["step"] = torch.tensor(float(opt_state["t"]))
            state[position[id(tensor)]] = entry
        return {"state": state, "param_groups": self.optimizer.state_dict()["param_groups"]}

    def step(
        self, X: np.ndarray, Y: np.ndarray, masks: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """One training step on ``X: (B, n_0)``, ``Y: (B, n_L)`` (and, with dropout, the
        step's keep masks ``{"M1": (B, n_1), …}``); returns scratch's trace, every float
        tensor as NumPy (``_canonical``; the step count apart: it is an integer)."""
        self._require_state()
        if bool(masks) != bool(self.mlp.dropout):
            raise ValueError("dropout masks are given exactly when the network has dropout")
        X, Y = self._tensor("X", X), self._tensor("Y", Y)
        tensors = {k: self._tensor(k, m) for k, m in masks.items()} if masks else None
        trace = train_step(
            self.model,
            self.loss_fn,
            self.optimizer,
            X,
            Y,
            self._params,
            self.opt.clip_norm,
            self.scheduler,
            tensors,
            self.mlp.dropout,
            self._before,
        )
        trace.update(self._read_state())
        self._t += 1
        out = self._canonical(trace)
        # Adam's own count (torch.optim's "step"); SGD's keeps none: the engine counts
        count = trace["t"].item() if "t" in trace else self._t
        out["t"] = np.asarray(int(count), dtype=np.int64)
        return {name: out[name] for name in self._trace_names}

    def _canonical(self, trace: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The trace's float tensors as NumPy arrays in scratch's layout. On the CPU, what
        this step made (Z, A, the gradients' copies, Δ, …) is handed over as it is, NumPy
        views of the tensors (nothing else holds them), and only what the engine keeps and
        changes in place at its next step (the parameters, torch.optim's buffers, batch
        norm's statistics) is copied, in one concatenation. On a GPU all of it comes over in
        one copy."""
        floats = self._floats

        def copied(names: list[str]) -> dict[str, np.ndarray]:
            tensors = [trace[n] for n in names]
            return dict(zip(names, to_canonical_all(names, tensors), strict=True)) if names else {}

        if self.device.type != "cpu":
            return copied(floats)
        kept = {t.untyped_storage().data_ptr() for t in self._kept_tensors()}
        out = copied([n for n in floats if trace[n].untyped_storage().data_ptr() in kept])
        for name in floats:
            if name not in out:
                view = trace[name].detach().numpy()
                out[name] = view.T if is_weight_shaped(name) else view
        return out

    def _kept_tensors(self) -> list[torch.Tensor]:
        """Every tensor the engine keeps from one step to the next."""
        kept = list(self._params.values())
        kept += [t for state in self.optimizer.state.values() for t in state.values()]
        kept += [s for norm in self._norms.values() for s in (norm.running_mean, norm.running_var)]
        return [t for t in kept if isinstance(t, torch.Tensor)]

    def _read_state(self) -> dict[str, torch.Tensor]:
        """torch.optim's state after the step under the trace's names: ``momentum_buffer``
        as ``momentum_{p}``, ``exp_avg`` and ``exp_avg_sq`` as ``adam_m_{p}``, ``adam_v_{p}``,
        and Adam's step count (kept per parameter, the same for all) as ``t``."""
        state = self.optimizer.state
        out = {
            STATE[s].prefix + p: state[t][STATE_KEYS[s]]
            for p, t in self._params.items()
            for s in self._kept
        }
        if COUNTED[self.opt.name]:
            out["t"] = state[self._params["W1"]]["step"]
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """A_L = model(X)   (n, n_L), under ``torch.no_grad`` (no graph is built), in
        ``eval()`` mode: BatchNorm1d normalizes with its running statistics."""
        self._require_state()
        self.model.eval()
        try:
            with torch.no_grad():
                A_L = self.model(self._tensor("X", X))
        finally:
            self.model.train()
        return to_canonical(f"A{self.mlp.n_layers}", A_L, self.dtype)

    def params(self) -> dict[str, np.ndarray]:
        """The current parameters ``W1, b1, …`` as canonical NumPy copies."""
        self._require_state()
        return {p: to_canonical(p, t, self.dtype) for p, t in self._params.items()}

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """What its next step starts from, as ``set_state`` takes it: the parameters and
        scratch's optimizer state (torch.optim's buffers, the running statistics, ``t``)."""
        self._require_state()
        kept = {n: to_canonical(n, v, self.dtype) for n, v in self._read_state().items()}
        for l, norm in self._norms.items():
            for name, tensor in (
                ("running_mean", norm.running_mean),
                ("running_var", norm.running_var),
            ):
                kept[f"{name}{l}"] = to_canonical(f"{name}{l}", tensor, self.dtype)
        kept["t"] = self._t
        return self.params(), kept

    def _require_state(self) -> None:
        if not self._loaded:
            raise RuntimeError("no parameters yet: call set_state(params, opt_state) first")
