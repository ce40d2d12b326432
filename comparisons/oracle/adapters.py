"""The engine under test behind an adapter: what lockstep asks of it — its state loaded and
read, its batch, its step, its trace sorted against the schema, and what it writes or keeps —
whichever engine it is. Every engine implements one protocol (``run/contract.py``); what
differs between this repository's own engine and any other is which adapter drives it
(``adapter_for``), never a branch on its name.

``ScratchAdapter`` drives scratch as this repository's own code: its batching function is
checked, its inputs must come back unwritten (an in-place write is named by a re-run on
read-only inputs), and every tensor of the schema is required of it. ``ContractAdapter``
drives any other engine: it is given the schedule's batch, its ``state()`` is checked against
the contract, its arrays are read as NumPy reads them and copied (it may reuse its buffers),
and what it keeps after a step must be what its trace says.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

import scratch.network
import scratch.training
from comparisons.oracle.batching import scratch_batching
from comparisons.oracle.compare import Comparison, mismatch
from comparisons.oracle.divergence import EngineFailure, engine_failure
from comparisons.oracle.isolation import in_place_writes, same_bits
from comparisons.run.contract import (
    ContractError,
    as_arrays,
    check_takes_masks,
    load_state,
    read_state,
    required_names,
)
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import UnderTest
from data.schedule import Step
from scratch.trace_equations import describe
from scratch.trace_schema import batch_names, names_of

NOT_PROVIDED = "not provided by the engine under test, and the contract requires it"
FOREIGN = "not a name of the trace schema (scratch/trace_schema.py): misspelt?"

Found = list[tuple[int, Comparison]]  # failures, each at its position in dataflow order


def adapter_for(inputs: RunInputs, under_test: UnderTest, engine) -> EngineAdapter:
    """The adapter that drives ``engine``, the engine under test of this run."""
    kind = ScratchAdapter if under_test.is_scratch else ContractAdapter
    return kind(inputs, under_test, engine)


class EngineAdapter:
    """One engine under test in one run: what both adapters share."""

    checks_batching = False  # whether its batching function is checked before its trace

    def __init__(self, inputs: RunInputs, under_test: UnderTest, engine):
        self.inputs, self.under_test, self.engine = inputs, under_test, engine
        self.where = f"--engine {under_test.spec}"
        self.trace_names = names_of(inputs.mlp, inputs.optimizer)
        self.names = set(self.trace_names)
        # the dataflow order: its batching (where checked), then its trace
        self.expected = [*(batch_names() if self.checks_batching else []), *self.trace_names]
        # every tensor is required of a complete engine (scratch); of others, the contract's
        n_layers, optimizer = inputs.mlp.n_layers, inputs.optimizer.name
        required = required_names(n_layers, optimizer, inputs.mlp.batch_norm)
        self.required = set(self.trace_names if getattr(engine, "complete", False) else required)
        self.not_provided: set[str] = set()  # optional tensors its traces left out
        self._look_at: dict[str, str] = {}

    def position(self, tensor: str) -> int:
        """Where ``tensor`` comes in dataflow order (names outside the schema last)."""
        return self.expected.index(tensor) if tensor in self.expected else len(self.expected)

    def step(self, step: Step, batch) -> tuple[dict, EngineFailure | None, list[str]]:
        """The step's trace in the schema's order, the failure where the engine raised (the
        trace then holds what it had computed), and the names it gave outside the schema."""
        if batch is None:
            return {}, None, []
        try:
            with np.errstate(all="ignore"):  # a NaN or inf is judged, not warned about
                trace = self.engine.step(*batch, **self.step_keywords(step, batch))
        except Exception as error:  # a bug of the engine's is a verdict, not a crash
            name = self.under_test.name
            failure, partial = engine_failure(name, self.under_test.package, step, error)
            failure.computed = [n for n in self.expected if n in partial]
            return {n: partial[n] for n in failure.computed}, failure, []
        if not isinstance(trace, Mapping):
            raise ContractError(
                f"{self.where}: step() returned a {type(trace).__name__}, not a dict of "
                "arrays named by the trace schema"
            )
        trace = self.received(trace)
        foreign = [n for n in trace if n not in self.names]
        return {n: trace[n] for n in self.trace_names if n in trace}, None, foreign

    def look_at(self, tensor: str) -> str:
        """Where a reader should look when ``tensor`` is the first to disagree."""
        if tensor not in self._look_at:
            self._look_at[tensor] = look_at_tensor(self.inputs, self.under_test, tensor)
        return self._look_at[tensor]

    # --- what the adapters do differently ----------------------------------------------------

    def load(self, params: dict, state: dict) -> None:
        raise NotImplementedError

    def state(self) -> tuple[dict, dict]:
        """What the engine starts its next step from."""
        raise NotImplementedError

    def batch(self, step: Step) -> tuple[list[Comparison], tuple | None]:
        """The checks of its batching and the batch it reads (None where it has no such
        batch)."""
        raise NotImplementedError

    def step_keywords(self, step: Step, batch) -> dict:
        """What the step is given besides X and Y (``RunInputs.step_keywords``)."""
        return self.inputs.step_keywords(step)

    def received(self, trace: Mapping) -> Mapping:
        """Its trace as the oracle keeps it."""
        return trace

    def in_place(self, step: Step, inputs: tuple[dict, dict], pristine: dict, views, batch):
        """Its writes into the state it was given, and the function that writes."""
        return [], ""

    def kept(self, step: Step, trace: dict, before: dict) -> Found:
        """What it keeps after its step unlike what its trace says."""
        return []


class ScratchAdapter(EngineAdapter):
    """Scratch, this repository's own engine: its batching checked, its inputs checked
    unwritten, every tensor required; its state is its trace by construction
    (``scratch/training.py``)."""

    checks_batching = True

    def __init__(self, inputs: RunInputs, under_test: UnderTest, engine):
        super().__init__(inputs, under_test, engine)
        self._batches: tuple[int, list[np.ndarray]] = (-1, [])

    def load(self, params: dict, state: dict) -> None:
        self.engine.set_state(params, state)

    def state(self) -> tuple[dict, dict]:
        return self.engine.state()

    def batch(self, step: Step) -> tuple[list[Comparison], tuple | None]:
        """The checks of scratch's batching against the schedule's, and the batch it reads."""
        X, Y = self.inputs.train
        if self._batches[0] != step.epoch:
            # looked up on the module when called, so that a fault patched into scratch shows
            schedule = self.inputs.schedule
            made = scratch.training.epoch_batches(
                schedule.orders[step.epoch], schedule.batch_size, schedule.drop_last
            )
            self._batches = (step.epoch, made)
        return scratch_batching(self.inputs, step, X, Y, self._batches[1])

    def step_keywords(self, step: Step, batch) -> dict:
        """Scratch draws its own dropout masks (``network.dropout_masks``, looked up when
        called, so that a fault patched into it shows): the references are given the
        schedule's, and the traces' M_l hold scratch's to them exactly."""
        inputs = self.inputs
        if not inputs.mlp.dropout:
            return inputs.step_keywords(step)
        B, seed, dtype = len(batch[0]), inputs.spec.seed, inputs.spec.dtype
        return {"masks": scratch.network.dropout_masks(inputs.mlp, B, seed, step.index, dtype)}

    def in_place(self, step: Step, inputs: tuple[dict, dict], pristine: dict, views, batch):
        """Scratch's writes into the state it was given (``inputs``, against ``pristine``
        copies), and the function that writes, from a re-run on the read-only ``views``."""
        found = [(-1, c) for c in in_place_writes(*inputs, pristine, step)]
        return found, self._writer(step, views, batch) if found else ""

    def _writer(self, step: Step, views, batch) -> str:
        """Which function writes into its input: the same step again, on read-only inputs,
        so that the write itself raises and its frame names it."""
        inputs = self.inputs
        engine = self.under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
        engine.set_state(*views)
        try:
            with np.errstate(all="ignore"):
                engine.step(*batch, **self.step_keywords(step, batch))
        except ValueError as error:  # "assignment destination is read-only"
            name, package = self.under_test.name, self.under_test.package
            where = engine_failure(name, package, step, error)[0].where
            file_line, _, function = where.partition(" in ")
            file, _, line = file_line.rpartition(":")
            return f"{file}:{function} (line {line})"
        return ""


class ContractAdapter(EngineAdapter):
    """Any other engine, through the contract alone (``run/contract.py``)."""

    def __init__(self, inputs: RunInputs, under_test: UnderTest, engine):
        super().__init__(inputs, under_test, engine)
        if inputs.mlp.dropout:
            check_takes_masks(engine, self.where)

    def load(self, params: dict, state: dict) -> None:
        load_state(self.engine, params, state, self.where)

    def state(self) -> tuple[dict, dict]:
        """Its state, checked against the contract, and read as NumPy reads it."""
        return read_state(self.engine, self.inputs.mlp, self.inputs.optimizer, self.where)

    def batch(self, step: Step) -> tuple[list[Comparison], tuple | None]:
        """The schedule's rows (a copy): no batching of its own is checked."""
        X, Y = self.inputs.train
        return [], (X[step.rows], Y[step.rows])

    def received(self, trace: Mapping) -> Mapping:
        """Copies: it may reuse its buffers next step."""
        return as_arrays(trace, f"{self.where}: step()", copy=True)

    def kept(self, step: Step, trace: dict, before: dict) -> Found:
        """What it keeps after its step against what its trace says it computed: the next
        step starts from ``state()``, so a difference would go unseen otherwise (the
        references are loaded with it). And the step count goes up by one. (Its ``state()``
        may be its own arrays, which it may update in place: this is checked instead of its
        writes into its inputs.)"""
        params, state = self.state()
        found = []
        for name, kept in {**params, **state}.items():
            if name in trace and name != "t" and not same_bits(trace[name], kept):
                problem = (
                    f"the engine keeps a {name} other than its trace's after step "
                    f"{step.index} (state() differs from what step() returned)"
                )
                ours = self.under_test.name
                found.append((self.position(name), mismatch(name, ours, problem, ours)))
        t0, t1 = int(before["t"]), int(state["t"])
        if t1 != t0 + 1:
            problem = f"state()'s step count t went from {t0} to {t1} in step {step.index}"
            ours = self.under_test.name
            found.append((self.position("t"), mismatch("t", ours, problem, ours)))
        return found


def look_at_tensor(inputs: RunInputs, under_test: UnderTest, tensor: str) -> str:
    """Where a reader should look when ``tensor`` is the first to disagree: scratch's
    function, or, in another engine, the code that computes the tensor's equation."""
    try:
        described = describe(tensor, inputs.mlp, inputs.optimizer)
    except KeyError:
        return ""
    if under_test.is_scratch:
        return described.producer
    return f"{under_test.code}: where it computes {described.equation}"
