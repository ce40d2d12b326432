"""SIGINT and SIGTERM recorded, to stop a run where it can stop cleanly.

The handler only records the signal: an exception raised from a signal handler lands in
whatever Python code runs at that instant, and where that is a callback whose exceptions are
discarded (JAX's garbage-collection callback, a ``__del__``, a weakref callback) the signal
would be lost and the run would go on. The run asks ``stop_if_signalled`` at its step and
chunk boundaries (``comparisons.progress.Progress``), after loading its inputs and in the
report writer, which raises KeyboardInterrupt (SIGINT) or Terminated (SIGTERM) there. A
second signal while the first waits raises at once (an engine stuck in a step can still be
stopped)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the signals recorded and not yet acted on, in order


class Terminated(BaseException):
    """SIGTERM arrived (``kill PID``, a CI runner's cancel): the counterpart of
    KeyboardInterrupt, and like it not an Exception, so only cleanups catch it."""


def _exception(signum: int) -> BaseException:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _record(signum: int, frame: object) -> None:
    if _received:  # asked twice: the run did not reach a boundary, stop it where it is
        raise _exception(_received[0])
    _received.append(signum)


def signalled() -> int | None:
    """The signal recorded and not yet acted on (SIGINT or SIGTERM), or None."""
    return _received[0] if _received else None


def stop_if_signalled() -> None:
    """Raise KeyboardInterrupt (SIGINT) or Terminated (SIGTERM) in the main thread if one was
    recorded; a no-op elsewhere, and where ``signals_recorded`` is not in force."""
    if _received and threading.current_thread() is threading.main_thread():
        raise _exception(_received[0])


def install_signal_recorder() -> None:
    """Record SIGINT and SIGTERM from now on (the entry point calls it first of all, so that
    a signal during start-up is recorded too, and ends the run with no traceback)."""
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            if signal.getsignal(signum) is not _record:
                signal.signal(signum, _record)


@contextlib.contextmanager
def signals_recorded() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are recorded for ``stop_if_signalled`` (in the
    main thread; elsewhere, where a handler cannot be set, nothing changes); the previous
    handlers are restored after. A signal recorded before the block (during start-up) is
    kept; one from an earlier block is not."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    if any(handler is not _record for handler in previous.values()):
        _received.clear()
    install_signal_recorder()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if any(handler is not _record for handler in previous.values()):
            _received.clear()  # acted on within the block; none outside it
