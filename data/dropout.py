"""The seeded dropout masks every engine of a run is given, step by step.

Algorithm (enough to reproduce it in another implementation; scratch's
``network.dropout_masks`` draws its own, and the oracle holds them to these exactly):

1. For step k (numbered globally from 0, as the batch schedule numbers them), a generator
   PCG64 seeded by ``numpy.random.SeedSequence([seed, k, 1])`` (the run's seed; the last 1
   keeps the stream apart from the schedule's, seeded by ``seed`` alone).
2. For each hidden layer l = 1, …, L-1 in order, ``B × n_l`` uniform doubles on [0, 1)
   (``Generator.random``), row by row; a unit is dropped where its draw is below the rate p.
3. The mask ``Ml`` holds 0.0 for a dropped unit and 1.0 for a kept one, in the run's dtype.
"""

from __future__ import annotations

import numpy as np


def keep_masks(
    seed: int, step: int, batch: int, widths: tuple[int, ...], rate: float, dtype: str
) -> dict[str, np.ndarray]:
    """Step ``step``'s masks ``{"M1": (batch, widths[0]), …}``, one per hidden width."""
    bits = np.random.PCG64(np.random.SeedSequence([seed, step, 1]))
    generator = np.random.Generator(bits)
    masks = {}
    for layer, width in enumerate(widths, start=1):
        dropped = generator.random(size=(batch, width)) < rate
        masks[f"M{layer}"] = np.where(dropped, 0.0, 1.0).astype(dtype)
    return masks
