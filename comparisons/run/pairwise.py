"""A covering set of a product of options: every pair of values of any two options that some
valid row can hold meets in at least one row (all-pairs testing).

Options interact in pairs (L2 with batch norm's γ, clipping with a dtype, a schedule with an
optimizer), and a bug that needs two of them is found by a set that holds every pair, at a
small fraction of the product: ``check``'s covering set (``run/coverage.py``) and the slow
tier's options matrix (``tests/comparisons/test_lockstep.py``) are both built here.

What is valid is the caller's ``valid(row)``, asked of whole rows only (the run spec's own
validation, for check): True, or else False or the reason the row is refused. A pair is
feasible when some valid row holds it; rows are built one at a time, greedily (each factor
in turn, those with the most values first, takes the value that meets the most pairs not yet
covered), from the uncovered pair whose row covers the most of the first ``SEEDS``, and a
row is only ever made of pairs that are feasible. A pair is found feasible
by searching for a valid row that holds it, from a valid row: each other factor changed in
turn, then, from each change that moved the refusal's reason (it made progress), up to
``REPAIRS`` changes in all; so a rule of the spec that ties up to three options together is
honoured, and a pair no change moves is refused after one pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

REPAIRS = 2  # how many other factors the search for a pair's valid row may change
SEEDS = 8  # how many uncovered pairs each row is tried from


def pairwise(*factors: Sequence, valid: Callable[[tuple], bool] = lambda row: True) -> list[tuple]:
    """Rows (tuples, one value per factor) that hold every feasible pair of values."""
    builder = _Builder([list(f) for f in factors], valid)
    return builder.rows()


def feasible_pairs(*factors: Sequence, valid: Callable[[tuple], bool] = lambda row: True):
    """Every pair ((i, a), (j, b)), i < j, of factor positions and value positions that some
    valid row holds (the pairs ``pairwise`` covers)."""
    builder = _Builder([list(f) for f in factors], valid)
    return {pair for pair, ok in builder.feasible.items() if ok}


class _Builder:
    def __init__(self, factors: list[list], valid: Callable[[tuple], bool]) -> None:
        if any(not f for f in factors):
            raise ValueError("pairwise: every factor needs at least one value")
        self.factors, self.valid = factors, valid
        self._checked: dict[tuple, bool] = {}
        self._held: set = set()  # the pairs of every valid row met so far
        self.base = self._first_valid()
        self._order = sorted(range(len(factors)), key=lambda k: -len(factors[k]))
        self.feasible = {
            ((i, a), (j, b)): ((i, a), (j, b)) in self._held
            or self._witness({i: a, j: b}) is not None
            for i, j in itertools.combinations(range(len(factors)), 2)
            for a in range(len(factors[i]))
            for b in range(len(factors[j]))
        }

    def _row(self, at: Sequence[int]) -> tuple:
        return tuple(f[k] for f, k in zip(self.factors, at, strict=True))

    def _is_valid(self, at: tuple[int, ...]) -> bool:
        return self._reason(at) is True

    def _reason(self, at: tuple[int, ...]):
        """True where ``valid`` takes the row, else its reason (False where it gives none)."""
        if at not in self._checked:
            reason = self.valid(self._row(at))
            self._checked[at] = True if reason is True else (reason or False)
            if reason is True:
                self._held.update(self._pairs_of(at))
        return self._checked[at]

    def _first_valid(self) -> tuple[int, ...]:
        for at in itertools.product(*(range(len(f)) for f in self.factors)):
            if self._is_valid(at):
                return at
        raise ValueError("pairwise: no row of the product is valid")

    def _witness(self, fixed: dict[int, int]) -> tuple[int, ...] | None:
        """A valid row holding ``fixed`` (factor: value position): the base row with
        ``fixed`` set, repaired by up to ``REPAIRS`` changes of the other factors, each after
        the first only from a change that moved the refusal's reason."""
        free = [k for k in range(len(self.factors)) if k not in fixed]
        start = tuple(fixed.get(k, v) for k, v in enumerate(self.base))
        if self._is_valid(start):
            return start
        frontier = [start]
        for _ in range(REPAIRS):
            moved = []
            for at in frontier:
                reason = self._reason(at)
                for k in free:
                    for v in range(len(self.factors[k])):
                        if v == at[k]:
                            continue
                        changed = (*at[:k], v, *at[k + 1 :])
                        after = self._reason(changed)
                        if after is True:
                            return changed
                        if after != reason:
                            moved.append(changed)
            frontier = moved
        return None

    def rows(self) -> list[tuple]:
        uncovered = {pair for pair, ok in self.feasible.items() if ok}
        chosen: list[tuple[int, ...]] = []
        while uncovered:
            at = self._next_row(uncovered)
            chosen.append(at)
            uncovered -= set(self._pairs_of(at))
        # A row whose every pair another row also holds is left out (the last first).
        held: dict = {}
        for at in chosen:
            for pair in self._pairs_of(at):
                held[pair] = held.get(pair, 0) + 1
        for at in reversed(list(chosen)):
            if all(held[pair] > 1 for pair in self._pairs_of(at)):
                chosen.remove(at)
                for pair in self._pairs_of(at):
                    held[pair] -= 1
        return [self._row(at) for at in chosen]

    @staticmethod
    def _pairs_of(at: Sequence[int]):
        return (((i, at[i]), (j, at[j])) for i, j in itertools.combinations(range(len(at)), 2))

    def _next_row(self, uncovered: set) -> tuple[int, ...]:
        """The row that covers the most pairs not yet covered (the first on a tie) of those
        grown from each of the first ``SEEDS`` uncovered pairs; should it not be valid (a
        rule tying three options), its seed pair's witness row instead."""
        best, gain, seed = None, -1, None
        for pair in sorted(uncovered)[:SEEDS]:
            at = self._grow(pair, uncovered)
            if at is not None:
                new = sum(p in uncovered for p in self._pairs_of(at))
                if new > gain:
                    best, gain, seed = at, new, pair
        if best is None or not self._is_valid(best):
            (i, a), (j, b) = seed if seed is not None else min(uncovered)
            witness = self._witness({i: a, j: b})
            assert witness is not None  # the pair is feasible
            return witness
        return best

    def _grow(self, pair: tuple, uncovered: set) -> tuple[int, ...] | None:
        """A row holding ``pair``: every other factor, the ones with the most values first,
        takes the value that covers the most uncovered pairs with the values already chosen,
        among those whose pairs with them are all feasible (the first such on a tie)."""
        (i, a), (j, b) = pair
        fixed = {i: a, j: b}
        for k in self._order:
            if k in fixed:
                continue
            best, gain = None, -1
            for v in range(len(self.factors[k])):
                if not all(self._pair_ok(k, v, m, w) for m, w in fixed.items()):
                    continue
                new = sum(_key(k, v, m, w) in uncovered for m, w in fixed.items())
                if new > gain:
                    best, gain = v, new
            if best is None:
                return None
            fixed[k] = best
        return tuple(fixed[k] for k in range(len(self.factors)))

    def _pair_ok(self, k: int, v: int, m: int, w: int) -> bool:
        return self.feasible[_key(k, v, m, w)]


def _key(k: int, v: int, m: int, w: int) -> tuple:
    return ((k, v), (m, w)) if k < m else ((m, w), (k, v))
