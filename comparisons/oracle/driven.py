"""The engine under test as lockstep drives it: its state loaded and read, its batch, its step,
its trace sorted against the schema, and what it writes or keeps.

Scratch is driven as this repository's own code: its batching function is checked, its inputs
must come back unwritten (an in-place write is named by a re-run on read-only inputs), and
every tensor of the schema is required of it. Another engine (``run/contract.py``) is given
the schedule's batch, its ``state()`` is checked against the contract, its arrays are read as
NumPy reads them and copied (it may reuse its buffers), and what it keeps after a step must be
what its trace says.
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
    state_arrays,
    state_problems,
)
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import UnderTest
from data.schedule import Step
from scratch.trace_equations import describe
from scratch.trace_schema import batch_names, names_of

NOT_PROVIDED = "not provided by the engine under test, and the contract requires it"
FOREIGN = "not a name of the trace schema (scratch/trace_schema.py): misspelt?"

Found = list[tuple[int, Comparison]]  # failures, each at its position in dataflow order


class Driven:
    """One engine under test in one run."""

    def __init__(self, inputs: RunInputs, under_test: UnderTest, engine):
        self.inputs, self.under_test, self.engine = inputs, under_test, engine
        self.scratch = under_test.is_scratch
        self.where = f"--engine {under_test.name}"
        self.trace_names = names_of(inputs.mlp, inputs.optimizer)
        self.names = set(self.trace_names)
        # scratch's batching is checked before its trace; another engine is given its batch
        self.expected = [*(batch_names() if self.scratch else []), *self.trace_names]
        # every tensor is required of a complete engine (scratch); of others, the contract's
        complete = getattr(engine, "complete", False)
        n_layers, optimizer = inputs.mlp.n_layers, inputs.optimizer.name
        required = required_names(n_layers, optimizer, inputs.mlp.batch_norm)
        self.required = set(self.trace_names if complete else required)
        if inputs.mlp.dropout and not self.scratch:
            check_takes_masks(engine, self.where)
        self._batches: tuple[int, list[np.ndarray]] = (-1, [])

    def position(self, tensor: str) -> int:
        """Where ``tensor`` comes in dataflow order (names outside the schema last)."""
        return self.expected.index(tensor) if tensor in self.expected else len(self.expected)

    # --- state ---------------------------------------------------------------------------

    def load(self, params: dict, state: dict) -> None:
        if self.scratch:
            self.engine.set_state(params, state)
        else:
            load_state(self.engine, params, state, self.where)

    def state(self) -> tuple[dict, dict]:
        """What the engine starts its next step from (another engine's checked against the
        contract, and read as NumPy reads it)."""
        if self.scratch:
            return self.engine.state()
        return read_state(self.engine, self.inputs.mlp, self.inputs.optimizer, self.where)

    # --- the step ------------------------------------------------------------------------

    def batch(self, step: Step) -> tuple[list[Comparison], tuple | None]:
        """The checks of scratch's batching and the batch it reads (None where its batching
        has no such batch); another engine is given the schedule's rows (a copy)."""
        X, Y = self.inputs.train
        if not self.scratch:
            return [], (X[step.rows], Y[step.rows])
        if self._batches[0] != step.epoch:
            # looked up on the module when called, so that a fault patched into scratch shows
            schedule = self.inputs.schedule
            made = scratch.training.epoch_batches(
                schedule.orders[step.epoch], schedule.batch_size, schedule.drop_last
            )
            self._batches = (step.epoch, made)
        return scratch_batching(self.inputs, step, X, Y, self._batches[1])

    def step(self, step: Step, batch) -> tuple[dict, EngineFailure | None, list[str]]:
        """The step's trace in the schema's order, the failure where the engine raised (the
        trace then holds what it had computed), and the names it gave outside the schema."""
        if batch is None:
            return {}, None, []
        try:
            with np.errstate(all="ignore"):  # a NaN or inf is judged, not warned about
                trace = self.engine.step(*batch, **self.given(step, batch))
        except Exception as error:  # a bug of the engine's is a verdict, not a crash
            failure, partial = engine_failure("scratch", self.under_test.package, step, error)
            failure.computed = [n for n in self.expected if n in partial]
            failure.label = "" if self.scratch else self.under_test.name
            return {n: partial[n] for n in failure.computed}, failure, []
        if not isinstance(trace, Mapping):
            raise ContractError(
                f"{self.where}: step() returned a {type(trace).__name__}, not a dict of "
                "arrays named by the trace schema"
            )
        if not self.scratch:  # copies: it may reuse its buffers next step
            trace = as_arrays(trace, f"{self.where}: step()", copy=True)
        foreign = [n for n in trace if n not in self.names]
        return {n: trace[n] for n in self.trace_names if n in trace}, None, foreign

    def given(self, step: Step, batch) -> dict:
        """What the step is given besides X and Y (``RunInputs.given``). Scratch draws its
        own dropout masks (``network.dropout_masks``, looked up when called, so that a fault
        patched into it shows): the references are given the schedule's, and the traces' M_l
        hold scratch's to them exactly."""
        inputs = self.inputs
        if not (self.scratch and inputs.mlp.dropout):
            return inputs.given(step)
        B, seed, dtype = len(batch[0]), inputs.spec.seed, inputs.spec.dtype
        return {"masks": scratch.network.dropout_masks(inputs.mlp, B, seed, step.index, dtype)}

    # --- what it writes and keeps ---------------------------------------------------------

    def in_place(self, step: Step, inputs: tuple[dict, dict], pristine: dict, given, batch):
        """Scratch's writes into the state it was given (``inputs``, against ``pristine``
        copies), and the function that writes, from a re-run on the read-only ``given``
        views. Another engine's ``state()`` may be its own arrays, which it may update in
        place: what it keeps is checked instead (``kept``)."""
        if not self.scratch:
            return [], ""
        found = [(-1, c) for c in in_place_writes(*inputs, pristine, step)]
        return found, self._writer(step, given, batch) if found else ""

    def _writer(self, step: Step, given, batch) -> str:
        """Which function writes into its input: the same step again, on read-only inputs,
        so that the write itself raises and its frame names it."""
        inputs = self.inputs
        engine = self.under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
        engine.set_state(*given)
        try:
            with np.errstate(all="ignore"):
                engine.step(*batch, **self.given(step, batch))
        except ValueError as error:  # "assignment destination is read-only"
            where = engine_failure("scratch", self.under_test.package, step, error)[0].where
            file_line, _, function = where.partition(" in ")
            file, _, line = file_line.rpartition(":")
            return f"{file}:{function} (line {line})"
        return ""

    def kept(self, step: Step, trace: dict, before: dict) -> tuple[Found, dict, bool]:
        """The engine's state after its step (what the references are loaded with next), by
        entry: the failures found in it, its entries (parameters and optimizer state
        together: those its trace leaves out are compared in their place, ``lockstep``), and
        whether it is broken (an entry missing or misshapen: it cannot be loaded into the
        references, and the run ends at this step, a disagreement at that entry).

        Another engine's entries must also be what its trace says it computed, and its step
        count must go up by one; scratch's state is its trace by construction
        (``scratch/training.py``)."""
        mlp, optimizer = self.inputs.mlp, self.inputs.optimizer
        try:
            params, state = (
                self.engine.state() if self.scratch else state_arrays(self.engine, self.where)
            )
        except ContractError as error:
            problem = f"after step {step.index}: {error}"
            return [(len(self.expected), mismatch("state()", "scratch", problem))], {}, True
        problems = state_problems(params, state, mlp, optimizer)
        if problems:
            found = [
                (self.position(n), mismatch(n, "scratch", f"after step {step.index}: {p}"))
                for n, p in problems
            ]
            return found, {}, True
        entries = {**params, **state}
        if self.scratch:
            return [], entries, False
        found = []
        for name, kept in entries.items():
            if name in trace and name != "t" and not same_bits(trace[name], kept):
                problem = (
                    f"the engine keeps a {name} other than its trace's after step "
                    f"{step.index} (state() differs from what step() returned)"
                )
                found.append((self.position(name), mismatch(name, "scratch", problem)))
        t0, t1 = (
            int(np.asarray(before["t"]).reshape(-1)[0]),
            int(np.asarray(state["t"]).reshape(-1)[0]),
        )
        if t1 != t0 + 1:
            problem = f"state()'s step count t went from {t0} to {t1} in step {step.index}"
            found.append((self.position("t"), mismatch("t", "scratch", problem)))
        return found, entries, False

    def loaded(self, given: dict, read: dict) -> Found:
        """The engine's state as read back after the oracle loaded it (the start, or a
        recorded step's state) against what it was given, exactly: what the references are
        loaded with is then either this, or a state compared after the step before."""
        if self.scratch:  # its set_state keeps the very arrays
            return []
        found = []
        for name, value in given.items():
            if name not in read:
                continue  # the contract's check of state() names it
            a, b = np.asarray(read[name]), np.asarray(value)
            if a.shape != b.shape or not np.array_equal(a, b.astype(a.dtype), equal_nan=True):
                problem = "state() after set_state() differs from the state it was given"
                found.append((self.position(name), mismatch(name, "scratch", problem)))
        return found

    def look_at(self, tensor: str) -> str:
        return look_at_tensor(self.inputs, self.under_test, tensor)


def look_at_tensor(inputs: RunInputs, under_test: UnderTest, tensor: str) -> str:
    """Where a reader should look when ``tensor`` is the first to disagree: scratch's
    function, or, in another engine, the code that computes the tensor's equation."""
    try:
        described = describe(tensor, inputs.mlp, inputs.optimizer)
    except KeyError:
        return ""
    if under_test.is_scratch:
        return described.producer
    return f"{under_test.name}: where it computes {described.equation}"
