"""The lockstep oracle: every engine, every step, every tensor.

The rule is ``plain.py``'s loop, which a reader follows on one screen: before each step load
every reference with the engine under test's state, step every engine, compare every tensor
in dataflow order against its allowance, and the first tensor that fails decides (``judge``).
``chunked.py`` executes the same rule fast (chunks, stacked allowances, run-ahead, worker
processes), and is the default; ``plain=True`` (``run --plain``) runs the loop itself. Both
give the same result, and a test holds them to it.

Each engine gets its own copy of the parameters and state: the engine under test's inputs are
checked unchanged after its step (an in-place write is a divergence in itself), the references
get read-only views. Nothing is loaded into a reference that is not compared: the step count
is a trace tensor, and scratch's batching (how many batches, which rows) is checked exactly.

The run keeps per-step summaries only, never every tensor of every step, so memory does not
grow with the tensors' size times the number of steps. The first step's traces are kept
whole, for the report's equation walkthrough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from comparisons.oracle.adapters import NOT_PROVIDED, adapter_for
from comparisons.oracle.chunked import lockstep_chunked
from comparisons.oracle.plain import lockstep_plain
from comparisons.oracle.steps import LockstepResult
from comparisons.run.contract import Engine, load_state
from comparisons.run.engines import initial_state
from comparisons.run.inputs import RunInputs
from comparisons.run.under_test import SCRATCH, UnderTest
from data.schedule import Step

__all__ = ["NOT_PROVIDED", "LockstepResult", "lockstep"]


def lockstep(
    inputs: RunInputs,
    references: Mapping[str, Engine],
    *,
    stop_at_first: bool = False,
    steps: list[Step] | None = None,
    on_step: Callable[[int], None] | None = None,
    chunk: int | None = None,
    under_test: UnderTest = SCRATCH,
    reload: Callable[[int], tuple[dict, dict]] | None = None,
    plain: bool = False,
) -> LockstepResult:
    """Step the engine under test and every reference through the schedule (or ``steps``),
    comparing each step's trace.

    ``stop_at_first`` ends the run at the first divergent step (the quick answer a person
    changing scratch wants); otherwise the run goes on and counts the divergent steps. A
    diverged run and an engine's exception always end it.

    ``under_test``: the engine under test (scratch by default; the results name it by its
    name); any implementation of ``run/contract.py``. ``reload``: the state to load it
    with before each step, by step index (recorded references: ``run/recorded.py``), instead
    of letting it go on from its own. ``plain``: the plain loop (``plain.py``) instead of the
    chunked executor; ``chunk``: the chunked executor's chunk size (default: ``chunks.py``).
    """
    engine = under_test.make(inputs.mlp, inputs.optimizer, inputs.spec.dtype)
    load_state(
        engine,
        inputs.start(),
        initial_state(inputs.optimizer, inputs.params0),
        f"--engine {under_test.spec}",
    )
    adapted = adapter_for(inputs, under_test, engine)
    settings = {
        "stop_at_first": stop_at_first,
        "steps": steps,
        "on_step": on_step,
        "reload": reload,
    }
    if plain:
        return lockstep_plain(inputs, references, adapted, **settings)
    return lockstep_chunked(inputs, references, adapted, chunk=chunk, **settings)
