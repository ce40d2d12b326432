"""Small broken engines under test: bugs an engine can have that a patch of scratch cannot make.

Scratch is complete (its trace holds every tensor) and its state is its trace by
construction, so a bug in what an engine keeps but does not report, or in its evaluation, has
to be an engine of its own. Each engine here is scratch behind the contract
(``comparisons/run/contract.py``) with one thing broken; the fault catalogue runs them
(``Fault.engine``), and the tests of the oracle use them as the cases it must catch.
"""

from __future__ import annotations

import numpy as np

from comparisons.run.engines import ScratchEngine
from scratch.activations import get_activation
from scratch.network import dropout, forward
from scratch.trace_schema import parse, state_names


class Contracted:
    """scratch behind the contract: not ``complete``, so it may leave optional tensors out
    of its trace (``left_out``); it takes the step's dropout masks."""

    left_out: tuple[str, ...] = ()

    def __init__(self, mlp, optimizer, dtype):
        self.mlp, self.optimizer, self.dtype = mlp, optimizer, dtype
        self.inner = ScratchEngine(mlp, optimizer, dtype)

    def set_state(self, params, opt_state):
        self.inner.set_state(
            {k: np.array(v) for k, v in params.items()},
            {k: np.array(v) for k, v in opt_state.items()},
        )

    def state(self):
        return self.inner.state()

    def step(self, X, Y, masks=None):
        trace = self.inner.step(X, Y, masks=masks)
        return {n: v for n, v in trace.items() if n not in self.left_out}

    def predict(self, X):
        return self.inner.predict(X)


class MomentumL2AfterBuffer(Contracted):
    """Momentum with L2 where L2 is added after the buffer: v ← μv + g, then the update
    -lr·(v + λw). Each step's update is right (given the buffer it starts from), but the
    buffer it keeps lacks λw; its trace leaves the buffers out (they are optional)."""

    def step(self, X, Y, masks=None):
        before, _ = self.inner.state()
        trace = self.inner.step(X, Y, masks=masks)  # v ← μv + (g + λw)
        params, state = self.inner.state()
        l2, kept = self.optimizer.l2, dict(state)
        for p in params:
            if parse(p).decays:
                for name in state_names(self.optimizer.name, p):
                    kept[name] = state[name] - l2 * before[p]  # v ← μv + g
        self.inner.set_state(params, kept)
        return {n: v for n, v in trace.items() if not n.startswith("momentum_")}


class FrozenCount(Contracted):
    """Its step count never advances (and it leaves t, optional, out of its trace): a
    learning-rate schedule reads the first step's rate at every step."""

    left_out = ("t",)

    def step(self, X, Y, masks=None):
        t = self.inner.state()[1]["t"]
        trace = super().step(X, Y, masks)
        params, state = self.inner.state()
        self.inner.set_state(params, {**state, "t": t})
        return trace


class BatchStatisticsInEvaluation(Contracted):
    """Evaluation normalizes with the batch's statistics instead of the running ones."""

    def predict(self, X):
        params, state = self.inner.state()
        running = {k: v for k, v in state.items() if k.startswith("running_")}
        return forward(self.mlp, params, X, running=running)[f"A{self.mlp.n_layers}"]


class DropoutInEvaluation(Contracted):
    """Evaluation leaves dropout on (a fixed draw of masks)."""

    def predict(self, X):
        params, _ = self.inner.state()
        rng = np.random.default_rng(0)
        A = X
        for l in range(1, self.mlp.n_layers + 1):
            one = forward_one(self.mlp, params, A, l)
            if l < self.mlp.n_layers:
                keep = (rng.random(one.shape) >= self.mlp.dropout).astype(one.dtype)
                one = dropout(one, keep, self.mlp.dropout)
            A = one
        return A


def forward_one(mlp, params, A, l):
    """Layer l of the forward pass alone (no batch normalization), on its input A."""
    Z = A @ params[f"W{l}"] + params[f"b{l}"]
    return get_activation(mlp.activation_of(l)).forward(Z)


class OutputBiasSummedOverUnits(Contracted):
    """The output layer's bias gradient summed over the wrong axis, dZ_L.sum(axis=1): with
    one output it is (B,), and b_L - lr·db_L broadcasts to (B,), so the state's b_L grows a
    shape the network does not have (plain SGD)."""

    def step(self, X, Y, masks=None):
        before, _ = self.inner.state()
        trace = self.inner.step(X, Y, masks=masks)
        params, state = self.inner.state()
        L = self.mlp.n_layers
        db = trace[f"dZ{L}"].sum(axis=1)
        new = before[f"b{L}"] - self.optimizer.lr * db
        trace = {**trace, f"db{L}": db, f"Δb{L}": new - before[f"b{L}"], f"b{L}": new}
        self.inner.set_state({**params, f"b{L}": new}, state)
        return trace


class DisagreesThenDiverges(Contracted):
    """A wrong dW1 at step 0; at step 1 a W1 of 1e300 (finite, far off); at step 2 a W1 of
    NaN, which every engine is loaded with before step 3: all of them go non-finite there."""

    def step(self, X, Y, masks=None):
        t = int(self.inner.state()[1]["t"])
        trace = dict(self.inner.step(X, Y, masks=masks))
        if t == 0:
            trace["dW1"] = trace["dW1"] + 1.0
        elif t in (1, 2):
            params, state = self.inner.state()
            W1 = np.full_like(params["W1"], 1e300 if t == 1 else np.nan)
            trace["W1"] = W1
            self.inner.set_state({**params, "W1": W1}, state)
        return trace
