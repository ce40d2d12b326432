"""Training: one step on a mini-batch, and a loop over a batch schedule that yields traces.

A step's trace holds, in dataflow order (``trace_schema.py`` defines every name):
    Z1, A1, (M1, D1,) …, ZL, AL            forward values (a mask and the dropped-out
                                           output per hidden layer, with dropout)
    loss                                   mean over the batch
    dZL, dWL, dbL, …, dZ1, dW1, db1        error terms and gradients
    grad_norm                              ‖g‖ before clipping (when clip_norm > 0)
    lr                                     the learning rate in effect (with a schedule)
    ΔW1, Δb1, …, ΔWL, ΔbL                  the update: new minus old parameter
    t                                      the step count after the step (adam, adamw)
    momentum_W1 / adam_m_W1, adam_v_W1 /   the optimizer state after the step
    rmsprop_v_W1, …
    W1, b1, …, WL, bL                      the new parameters
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from scratch import optimizers
from scratch.config import MLP, Optimizer, ScratchInputError, check_inputs
from scratch.network import dropout_masks, evaluate, forward_backward
from scratch.trace_schema import COUNTED, running_names, state_names

Params = dict[str, np.ndarray]


class NonFiniteLossError(ArithmeticError):
    """The loss became NaN or infinite; ``step`` says at which step (0-based)."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"the loss is {loss} at step {step}: training diverged "
            f"(try a smaller learning rate, or check the inputs for extreme values)"
        )
        self.step, self.loss = step, loss


def train_step(
    mlp: MLP,
    opt: Optimizer,
    params: Params,
    state: dict,
    X: np.ndarray,
    Y: np.ndarray,
    check: bool = True,
    masks: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], Params, dict]:
    """Forward, backward and update on one batch: (trace, new parameters, new state).

    ``check``: the inputs are checked first (``config.check_inputs``); a loop that checked
    its data once passes False. ``masks``: the step's dropout masks (``dropout_masks``),
    required exactly when the network has dropout.
    """
    if check:
        check_inputs(mlp, params, X, Y)
    check_masks(mlp, masks, X.shape[0])  # always: without them the step would not drop
    running = None
    if mlp.batch_norm:
        if X.shape[0] < 2:
            raise ScratchInputError(
                "batch normalization needs at least 2 rows in a batch (one row has no "
                "variance); got 1"
            )
        running = {n: state[n] for n in running_names(mlp.n_layers, True)}
    trace = forward_backward(mlp, params, X, Y, masks, running)
    grads = {p: trace[f"d{p}"] for p in params}
    if opt.clip_norm:
        grads, norm = optimizers.clip_by_global_norm(grads, opt.clip_norm)
        trace["grad_norm"] = np.asarray(norm, dtype=X.dtype)
    if opt.lr_schedule != "constant":
        trace["lr"] = np.asarray(optimizers.learning_rate(opt, state["t"] + 1), dtype=X.dtype)
    new_params, new_state = optimizers.update(opt, params, grads, state)
    new_state.update({n: trace[n] for n in running or ()})  # the running statistics
    for p in params:
        trace[f"Δ{p}"] = new_params[p] - params[p]
    if COUNTED[opt.name]:
        trace["t"] = np.asarray(new_state["t"], dtype=np.int64)
    trace.update({name: new_state[name] for p in params for name in state_names(opt.name, p)})
    trace.update(new_params)
    return trace, new_params, new_state


def check_masks(mlp: MLP, masks: dict[str, np.ndarray] | None, batch: int) -> None:
    """Dropout masks for every hidden layer, (B, n_l) each, exactly when the network drops."""
    if not mlp.dropout:
        if masks:
            raise ScratchInputError("dropout masks given to a network without dropout")
        return
    if masks is None:
        raise ScratchInputError(
            f"this network has dropout {mlp.dropout}: a training step needs its masks "
            "(network.dropout_masks)"
        )
    for l in range(1, mlp.n_layers):
        shape = np.shape(masks.get(f"M{l}"))
        if shape != (batch, mlp.sizes[l]):
            raise ScratchInputError(
                f"mask M{l} has shape {shape}, expected {(batch, mlp.sizes[l])}"
            )


def epoch_batches(order: np.ndarray, batch_size: int, drop_last: bool = False) -> list[np.ndarray]:
    """Split one epoch's row order (n,) into mini-batches of ``batch_size`` rows.

    for start = 0, B, 2B, …:  rows = order[start : start + B]. The last batch has the n mod B
    rows left over; it is kept (the mean of its loss divides by its own size) unless
    ``drop_last``.
    """
    last_start = len(order) - batch_size + 1 if drop_last else len(order)
    return [order[start : start + batch_size] for start in range(0, last_start, batch_size)]


def minibatch(X: np.ndarray, Y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The batch's inputs and targets, the same rows of both: (X[rows], Y[rows])."""
    return X[rows], Y[rows]


def train(
    mlp: MLP,
    opt: Optimizer,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    batches: Iterable[np.ndarray],
    seed: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Train on ``X[rows], Y[rows]`` for each index array ``rows`` in ``batches``, in order.

    Yields each step's trace; the trace's new parameters are the next step's start. Stops
    with ``NonFiniteLossError`` naming the step where the loss stops being finite. With
    dropout, step k's masks are ``dropout_masks(mlp, B, seed, k)``.
    """
    check_inputs(mlp, params, X, Y)  # once, on the whole data set
    state = optimizers.init_state(opt, params)
    for step, rows in enumerate(batches):
        batch = minibatch(X, Y, rows)
        masks = dropout_masks(mlp, len(rows), seed, step, X.dtype) if mlp.dropout else None
        trace, params, state = train_step(mlp, opt, params, state, *batch, check=False, masks=masks)
        if not np.isfinite(trace["loss"]):
            raise NonFiniteLossError(step, float(trace["loss"]))
        yield trace


def classify(mlp: MLP, A_L: np.ndarray) -> np.ndarray:
    """The predicted class of each row of the output A_L (n, n_L), as (n,) integers.

    Several outputs: the argmax. One output: A_L past a threshold — 0 on logits
    (``bce_logits``: σ(0) = 0.5), 0.5 on outputs that estimate the 0/1 target (``bce``, ``mse``).
    """
    if mlp.sizes[-1] > 1:
        return A_L.argmax(axis=1)
    threshold = 0.0 if mlp.loss == "bce_logits" else 0.5
    return (A_L[:, 0] > threshold).astype(np.int64)


def accuracy_of(mlp: MLP, A_L: np.ndarray, Y: np.ndarray) -> float:
    """The fraction of rows whose predicted class equals the target's (Y one-hot or 0/1)."""
    truth = Y.argmax(axis=1) if Y.shape[1] > 1 else Y[:, 0].astype(np.int64)
    return float(np.mean(classify(mlp, A_L) == truth))


def accuracy(
    mlp: MLP, params: Params, X: np.ndarray, Y: np.ndarray, running: dict | None = None
) -> float:
    """The accuracy of the network with ``params`` on (X, Y), in evaluation (``running``: the
    running statistics, with batch normalization)."""
    return accuracy_of(mlp, evaluate(mlp, params, X, running), Y)
