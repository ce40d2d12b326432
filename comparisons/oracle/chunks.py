"""How lockstep groups its steps: chunks of one batch shape, and how many may wait.

Scratch runs ahead by up to CHUNK_STEPS steps of one batch shape; the references then replay
them, and the chunk is judged in a few array passes over matrices with a row per step. A
chunk's matrix is kept within about CHUNK_BYTES, so that those passes run in the CPU's cache
(measured: a 5-64-64-1 run takes 3.0 ms a step in chunks of 8, 3.7 ms in chunks of 32).

With references in worker processes, scratch and the references kept in the oracle's
process go on taking chunks while the workers replay the earlier ones: the traces of the
chunks taken and not yet judged are kept within about AHEAD_BYTES.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from comparisons.run.inputs import RunInputs
from data.schedule import Step
from scratch.trace_schema import names_of, shape_of

CHUNK_STEPS = 32
CHUNK_BYTES = 2 * 2**20
AHEAD_BYTES = 64 * 2**20


def chunk_steps(inputs: RunInputs) -> int:
    """How many steps a chunk takes: CHUNK_STEPS, fewer where a step's trace is large."""
    return max(1, min(CHUNK_STEPS, CHUNK_BYTES // _trace_bytes(inputs)))


def chunks_ahead(inputs: RunInputs, size: int, references: int) -> int:
    """How many chunks of ``size`` steps may wait to be judged: the traces of scratch and
    ``references`` engines within AHEAD_BYTES, and at least one."""
    return max(1, AHEAD_BYTES // (_trace_bytes(inputs) * size * (1 + references)))


def _trace_bytes(inputs: RunInputs) -> int:
    """A step's trace in bytes (float64, the first batch's shape)."""
    batch = len(inputs.schedule.steps[0].rows) if inputs.schedule.steps else 1
    names = names_of(inputs.mlp, inputs.optimizer)
    return 8 * sum(math.prod(shape_of(n, inputs.mlp.sizes, batch)) for n in names)


def chunks(steps: list[Step], size: int) -> Iterator[list[Step]]:
    """Consecutive steps of one batch shape, at most ``size`` at a time."""
    group: list[Step] = []
    for step in steps:
        if group and (len(group) == size or len(step.rows) != len(group[0].rows)):
            yield group
            group = []
        group.append(step)
    if group:
        yield group
