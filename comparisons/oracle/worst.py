"""The largest error seen per tensor over a whole run, for the report's worst-error table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class WorstSeen:
    """The largest error seen for one (engine, tensor) pair over the whole run."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    ratio: float = 0.0
    step: int = -1
    ok: bool = True


class WorstTable:
    """Every tensor's ``WorstSeen`` for one reference, kept as arrays so that a step's
    summaries merge in a few NumPy passes; ``items()`` gives them back one by one."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._at: dict[tuple[str, ...], np.ndarray] = {}
        self.ratio, self.max_abs, self.max_rel = np.zeros(0), np.zeros(0), np.zeros(0)
        self.step, self.ok = np.zeros(0, dtype=int), np.zeros(0, dtype=bool)

    def update(self, names: tuple[str, ...], ratio, max_abs, max_rel, step: int) -> None:
        at = self._positions(names)
        seen = self.step[at] >= 0
        better = ~seen | (ratio > self.ratio[at])
        self.step[at] = np.where(better, step, self.step[at])
        self.ratio[at] = np.where(better, ratio, self.ratio[at])
        self.max_abs[at] = np.fmax(self.max_abs[at], max_abs)
        self.max_rel[at] = np.fmax(self.max_rel[at], max_rel)
        self.ok[at] &= ratio <= 1.0  # a NaN ratio is not ok

    def _positions(self, names: tuple[str, ...]) -> np.ndarray:
        if names not in self._at:
            new = [n for n in names if n not in self.names]
            self.names += new
            grow = len(new)
            self.ratio = np.append(self.ratio, np.zeros(grow))
            self.max_abs = np.append(self.max_abs, np.zeros(grow))
            self.max_rel = np.append(self.max_rel, np.zeros(grow))
            self.step = np.append(self.step, np.full(grow, -1))
            self.ok = np.append(self.ok, np.ones(grow, dtype=bool))
            self._at[names] = np.array([self.names.index(n) for n in names], dtype=int)
        return self._at[names]

    def items(self) -> dict[str, WorstSeen]:
        return {
            n: WorstSeen(
                float(self.max_abs[i]),
                float(self.max_rel[i]),
                float(self.ratio[i]),
                int(self.step[i]),
                bool(self.ok[i]),
            )
            for i, n in enumerate(self.names)
        }
