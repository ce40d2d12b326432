"""A run's progress: a one-line progress bar on stderr (shown only when stderr is a
terminal), each step a boundary where a run that was signalled stops (``run/interrupts.py``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from comparisons.run.interrupts import (  # noqa: F401  (Terminated: re-exported)
    Terminated,
    stop_if_signalled,
)

_open_lines: set[int] = set()  # the streams (by id) a bar has drawn on without ending the line


def end_line(stream: TextIO | None = None) -> None:
    """End the line a progress bar left open, so that a message after it starts its own."""
    stream = stream or sys.stderr
    if id(stream) in _open_lines:
        _open_lines.discard(id(stream))
        stream.write("\n")
        stream.flush()


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total, self.label = max(total, 1), label
        self._last = 0.0

    def __call__(self, index: int) -> None:
        """Report that step ``index`` (0-based) is done; redraws at most 10 times a second.
        A step boundary: a run that was signalled stops here."""
        stop_if_signalled()
        if not self.enabled:
            return
        now = time.monotonic()
        done = min(index + 1, self.total)
        if done < self.total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * done // self.total
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} steps")
        _open_lines.add(id(self.stream))
        if done >= self.total:
            end_line(self.stream)
        self.stream.flush()
