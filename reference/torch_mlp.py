"""The scratch MLP rebuilt in PyTorch: ``nn.Linear`` layers, ``torch.nn`` losses, autograd and
``torch.optim``, written as a PyTorch user would. Nothing here re-implements an equation:
every number in a trace is computed by PyTorch, so that agreeing with scratch means something.

Shape letters: B the batch size, n_l the width of layer l (n_0 inputs, n_L outputs). Tensors
here are in PyTorch's layout: ``nn.Linear`` keeps its weight as ``(n_l, n_{l-1})``.
``torch_engine.py`` converts to and from scratch's layout, in one place.

Where PyTorch's conventions differ from the textbook forms (scratch follows PyTorch's):

    BCELoss         each log term is clamped below at -100, so a probability of exactly 0 or
                    1 gives a finite loss; its gradient divides by max(A(1 - A), 1e-12).
    SGD momentum    v ← μ·v + g;  θ ← θ - lr·v   (many texts write v ← μ·v - lr·g;  θ ← θ + v,
                    which differs once lr changes, and some damp g by (1 - μ)).
    SGD nesterov    v ← μ·v + g;  θ ← θ - lr·(g + μ·v)   (the gradient is taken at θ, not at
                    the look-ahead point θ - lr·μ·v of Nesterov's original form).
    Adam            θ ← θ - lr·m̂ / (√v̂ + ε): ε is added outside the square root.
    AdamW           θ ← θ·(1 - lr·λ) first, then the Adam step on the decayed θ; the decay is
                    scaled by lr (Loshchilov & Hutter scale it by a separate schedule factor).
    RMSprop         v ← α·v + (1-α)·g²;  θ ← θ - lr·g / (√v + ε): ε outside the square root,
                    v starting at 0, no bias correction; not centered, no momentum (scratch
                    offers neither). optax's ``rmsprop`` defaults to ε inside the root and
                    decay 0.9 (torch's α 0.99): the JAX reference sets it to torch's form.
    L2 (``l2``)     ``weight_decay`` of SGD, Adam and RMSprop adds λ·θ to the gradient inside the
                    optimizer; ``.grad`` and the loss stay those of the data alone.

Weight decay of either kind touches the weights only: the biases sit in a second parameter
group with ``weight_decay=0``.
"""

from __future__ import annotations

import torch
from torch import nn

from scratch.config import MLP, Optimizer
from scratch.trace_schema import param_names, parse

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,  # A = 1 / (1 + exp(-Z))
    "tanh": nn.Tanh,  # A = tanh(Z)
    "relu": nn.ReLU,  # A = max(Z, 0); autograd takes g'(0) = 0
    # A = Z for Z > 0, else 0.01·Z (scratch's LEAKY_RELU_SLOPE); autograd takes g'(0) = 0.01.
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=0.01),
    # A = Z for Z > 0, else 1.0·(exp(Z) - 1) (scratch's ELU_ALPHA); g' is exp(Z) below 0, 1 at 0.
    "elu": lambda: nn.ELU(alpha=1.0),
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

# λ is ``l2`` (SGD, Adam and RMSprop add it to g) or adamw's decoupled ``weight_decay``; it is
# set per parameter group by ``make_optimizer``, which also overrides AdamW's default decay of
# 0.01.
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
    "rmsprop": lambda groups, o: torch.optim.RMSprop(
        groups, lr=o.lr, alpha=o.alpha, eps=o.eps, momentum=0.0, centered=False
    ),
}

# The trace's optimizer state (scratch/trace_schema.py) -> the key torch.optim keeps it under.
STATE_KEYS = {
    "momentum": "momentum_buffer",
    "adam_m": "exp_avg",
    "adam_v": "exp_avg_sq",
    "rmsprop_v": "square_avg",
}
# The torch.optim optimizers that keep a ``step`` count in each parameter's state and fail
# without one: Adam's rule reads it, RMSprop only counts (the trace reports t where the rule
# reads it: ``COUNTED`` in scratch/trace_schema.py).
KEEPS_STEP = ("adam", "adamw", "rmsprop")


def choose(kind: str, name: str, table) -> object:
    """``table[name]``, or a ValueError that lists the names there are."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}")
    return table[name]


def make_model(mlp: MLP, dtype: torch.dtype, device: torch.device) -> nn.Sequential:
    """``Linear, activation, Linear, activation, …``, with ``BatchNorm1d`` between each hidden
    layer's Linear and its activation in a batch-normalized network; its weights come from
    scratch. Layer l is the model's l-th module (an ``nn.Sequential`` of those).

    ``skip_init``: no random draw (the weights are loaded from scratch before any step), and
    torch's global generator is left untouched.
    """
    layers: list[nn.Module] = []
    for l in range(1, mlp.n_layers + 1):
        n_in, n_out = mlp.sizes[l - 1], mlp.sizes[l]
        normalized = mlp.batch_norm and l < mlp.n_layers  # then without a bias, as is usual
        linear = nn.utils.skip_init(
            nn.Linear, n_in, n_out, bias=not normalized, dtype=dtype, device=device
        )
        layer = [linear]
        if normalized:
            # running ← (1 - m)·running + m·batch's, the variance kept unbiased: PyTorch's
            norm = nn.BatchNorm1d(
                n_out, eps=mlp.bn_eps, momentum=mlp.bn_momentum, dtype=dtype, device=device
            )
            layer.append(norm)
        layer.append(choose("activation", mlp.activation_of(l), ACTIVATIONS)())
        layers.append(nn.Sequential(*layer))
    return nn.Sequential(*layers)


def batch_norms(model: nn.Sequential) -> dict[int, nn.BatchNorm1d]:
    """Each batch-normalized layer's ``BatchNorm1d``, by layer number."""
    return {
        l: layer[1]
        for l, layer in enumerate(model, start=1)
        if isinstance(layer[1], nn.BatchNorm1d)
    }


def named_parameters(model: nn.Sequential) -> dict[str, nn.Parameter]:
    """``{"W1": weight of Linear 1, "b1": its bias, "gamma1": BatchNorm1d's weight, "beta1":
    its bias, …}``: the trace's names for them."""
    params = [t for layer in model for module in layer for t in module.parameters()]
    names = param_names(len(model), bool(batch_norms(model)))
    return dict(zip(names, params, strict=True))


def make_optimizer(opt: Optimizer, model: nn.Sequential) -> torch.optim.Optimizer:
    """The torch.optim optimizer ``opt`` names, with its decay on the weights only: the
    weights' parameter group gets λ, the biases' (and batch normalization's γ and β) 0."""
    make = choose("optimizer", opt.name, OPTIMIZERS)
    decay = opt.weight_decay if opt.name == "adamw" else opt.l2
    params = named_parameters(model)
    decays = {p: parse(p).decays for p in params}
    groups = [
        {"params": [t for p, t in params.items() if decays[p]], "weight_decay": decay},
        {"params": [t for p, t in params.items() if not decays[p]], "weight_decay": 0.0},
    ]
    return make(groups, opt)


def make_scheduler(opt: Optimizer, optimizer: torch.optim.Optimizer):
    """The ``torch.optim.lr_scheduler`` of ``opt.lr_schedule``, to be stepped once after every
    update (not once per epoch); None for "constant".

      step     StepLR(step_size, gamma)
      cosine   CosineAnnealingLR(T_max = D - w, eta_min = lr_min) after a linear warm-up of
               w updates, LinearLR(start_factor = 1/(w + 1), total_iters = w), joined by
               SequentialLR at update w (without warm-up, the cosine alone)
    """
    schedulers = torch.optim.lr_scheduler
    if opt.lr_schedule == "step":
        return schedulers.StepLR(optimizer, step_size=opt.lr_step_size, gamma=opt.lr_gamma)
    if opt.lr_schedule == "cosine":
        w = opt.lr_warmup
        cosine = schedulers.CosineAnnealingLR(
            optimizer, T_max=opt.lr_decay_steps - w, eta_min=opt.lr_min
        )
        if not w:
            return cosine
        warmup = schedulers.LinearLR(optimizer, start_factor=1 / (w + 1), total_iters=w)
        return schedulers.SequentialLR(optimizer, [warmup, cosine], milestones=[w])
    return None


def train_step(
    model: nn.Sequential,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    Y: torch.Tensor,
    params: dict[str, nn.Parameter] | None = None,
    clip_norm: float = 0.0,
    scheduler=None,
    masks: dict[str, torch.Tensor] | None = None,
    dropout: float = 0.0,
    before: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One training step on ``X: (B, n_0)``, ``Y: (B, n_L)``, and the tensors of its trace
    under the trace's names, in dataflow order (PyTorch's layout). The optimizer's state after
    the step is in ``optimizer.state``, under torch.optim's own names (see ``STATE_KEYS``).
    ``params`` is ``named_parameters(model)``, for a caller that keeps it; ``before``, tensors
    of the parameters' shapes that the parameters before the update are copied into (a
    caller's, reused from step to step), fresh copies without.

    forward   Z_l = Linear_l(A_{l-1}),  A_l = activation_l(Z_l)       (B, n_l)
    batch     with batch normalization, N_l = BatchNorm1d_l(Z_l) in training mode (it
    norm      moves its running statistics, read after it) and A_l = activation_l(N_l);
              dN_l from ``autograd.grad``. BatchNorm1d keeps mu_l, var_l and x̂_l to itself:
              they are computed again from Z_l with torch operations, as the schema
              defines them, and ``torch.autograd.grad`` gives their gradients from dN_l
              (``_batch_norm_parts``); dgamma_l, dbeta_l are BatchNorm1d's .grad
    dropout   with ``masks`` (the step's keep masks M_l, given: never drawn here), each
              hidden layer's D_l = A_l · (M_l / (1 - p)), ATen's dropout with M_l for its
              random mask; layer l + 1 reads D_l, and autograd takes it back
    loss      the loss module on (A_L, Y), mean over the batch        ()
    backward  ``torch.autograd.grad`` of the loss: dZ_l              (B, n_l),
              and the parameters' gradients, set as their ``.grad``; dW_l, db_l copied
              from it before the update
    clipping  with ``clip_norm`` > 0, ``clip_grad_norm_`` on every ``.grad`` together;
              grad_norm is the norm it returns (before clipping)     ()
    schedule  with a ``scheduler``, lr is the groups' lr of this update, and the scheduler
              steps after ``optimizer.step()``                        ()
    update    ``optimizer.step()``; Δθ = new - old, and the new θ
    """
    params = params if params is not None else named_parameters(model)
    L = len(model)  # layer l: (Linear_l, [BatchNorm1d_l,] activation_l)
    norms = batch_norms(model)
    with torch.no_grad():
        if before is None:
            before = {p: t.detach().clone() for p, t in params.items()}
        else:
            for p, t in params.items():
                before[p].copy_(t)

    trace: dict[str, torch.Tensor] = {}
    A = X  # (B, n_0)
    for l, layer in enumerate(model, start=1):
        Z = trace[f"Z{l}"] = layer[0](A)  # (B, n_l)
        if l in norms:
            N = norms[l](Z)  # (B, n_l); updates the running statistics
            trace[f"running_mean{l}"] = norms[l].running_mean.detach().clone()
            trace[f"running_var{l}"] = norms[l].running_var.detach().clone()
            trace[f"N{l}"] = Z = N
        A = trace[f"A{l}"] = layer[-1](Z)  # (B, n_l)
        if masks is not None and l < L:
            M = trace[f"M{l}"] = masks[f"M{l}"]  # (B, n_l)
            A = trace[f"D{l}"] = A * (M / (1.0 - dropout))  # (B, n_l)
    loss = trace["loss"] = loss_fn(A, Y)

    # One backward pass gives ∂loss/∂Z_l (and ∂loss/∂N_l), the error terms, with the
    # parameters' gradients, which torch.optim then reads as .grad: what backward() gives,
    # without a retain_grad hook on each new Z_l every step.
    taps = [f"{name}{l}" for l in range(1, L + 1) for name in "ZN" if f"{name}{l}" in trace]
    grads = torch.autograd.grad(loss, [trace[n] for n in taps] + list(params.values()))
    errors = dict(zip(taps, grads[: len(taps)], strict=True))
    for t, g in zip(params.values(), grads[len(taps) :], strict=True):
        t.grad = g  # this step's alone: nothing accumulates from the last
    for l in range(L, 0, -1):
        if l in norms:
            trace[f"dN{l}"] = errors[f"N{l}"]
            trace.update(_batch_norm_parts(l, trace[f"Z{l}"], norms[l], trace[f"dN{l}"]))
            trace[f"dgamma{l}"] = params[f"gamma{l}"].grad.clone()
            trace[f"dbeta{l}"] = params[f"beta{l}"].grad.clone()
        trace[f"dZ{l}"] = errors[f"Z{l}"]
        # copies: torch.optim may change .grad in place (CUDA's default multi-tensor SGD
        # adds μ·v into it for Nesterov), and the trace is read after the step
        trace[f"dW{l}"] = params[f"W{l}"].grad.clone()
        if f"b{l}" in params:  # not before a BatchNorm1d
            trace[f"db{l}"] = params[f"b{l}"].grad.clone()
    if clip_norm:
        trace["grad_norm"] = nn.utils.clip_grad_norm_(params.values(), clip_norm)
    if scheduler is not None:
        W = params["W1"]
        trace["lr"] = torch.tensor(optimizer.param_groups[0]["lr"], dtype=W.dtype, device=W.device)

    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    for p, t in params.items():
        trace[f"Δ{p}"] = t.detach() - before[p]
    trace.update({p: t.detach() for p, t in params.items()})
    return trace


def _batch_norm_parts(l: int, Z: torch.Tensor, norm: nn.BatchNorm1d, dN: torch.Tensor) -> dict:
    """mu_l, var_l and x̂_l, which BatchNorm1d does not expose, written as the trace schema
    defines them in torch operations on Z_l, and their gradients, ``torch.autograd.grad`` of
    N_l = γ·x̂_l + β given dN_l (mu's through x̂ and var both)."""
    with torch.enable_grad():
        Z = Z.detach().requires_grad_()
        mu = Z.mean(dim=0)
        var = ((Z - mu) ** 2).mean(dim=0)
        xhat = (Z - mu) / torch.sqrt(var + norm.eps)
        N = norm.weight.detach() * xhat + norm.bias.detach()
        dxhat, dvar, dmu = torch.autograd.grad(N, [xhat, var, mu], grad_outputs=dN)
    values = {"mu": mu, "var": var, "xhat": xhat, "dxhat": dxhat, "dvar": dvar, "dmu": dmu}
    return {f"{name}{l}": value.detach() for name, value in values.items()}
