"""A one-line progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total, self.label = total, label
        self._last = 0.0

    def __call__(self, index: int) -> None:
        """Report that step ``index`` (0-based) is done; redraws at most 10 times a second."""
        if not self.enabled:
            return
        now = time.monotonic()
        done = index + 1
        if done < self.total and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * done // self.total
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} steps")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
