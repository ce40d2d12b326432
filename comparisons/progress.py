"""A run's progress and its interruption: a one-line progress bar on stderr (shown only when
stderr is a terminal), and SIGTERM turned into an exception, as Python does for SIGINT, so
that a stopped run unwinds the same way whichever signal stopped it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

_open_lines: set[int] = set()  # the streams (by id) a bar has drawn on without ending the line


class Terminated(BaseException):
    """SIGTERM arrived (``kill PID``, a CI runner's cancel): the counterpart of
    KeyboardInterrupt, and like it not an Exception, so only cleanups catch it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread (elsewhere, where a
    handler cannot be set, nothing changes); the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


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
        """Report that step ``index`` (0-based) is done; redraws at most 10 times a second."""
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
