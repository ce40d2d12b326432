"""References in processes of their own, so that their work and the oracle's overlap.

A lockstep step's references depend only on scratch's state before it (DESIGN: each step's
differences are its own), so a reference can replay a chunk of steps in another process
while this one takes the next chunks with scratch, replays them with the references it
keeps, and judges the earlier ones in order. What it saves is mostly the frameworks' own
time: PyTorch spends ~2.5 s importing (torch, then torch._dynamo, which every torch.optim
optimizer imports) and ~1 ms a step, which the rest of the run no longer waits for.

A worker is a spawned process (never forked: a fork of a process holding PyTorch's or JAX's
threads can deadlock). It imports its reference's module as soon as it starts, then answers
messages, one reply each, in order:

    ("build", make, args)    its engine is make(*args)                 -> "built"
    ("replay", jobs)         the traces of the steps ``jobs``, each from the state given
                             with it, and the failure where the engine raised (``replay``)
    ("call", fn, args)       fn(engine, *args): ``predict``, the framework's
                             facts for the fingerprint (fn module-level: sent by name)
    ("close",)               end (no reply)

Everything a worker sends back is data (NumPy arrays, an ``EngineFailure``); an exception it
raises outside a step (building its engine, in a call) comes back and is raised here, as it
would have been in process; a worker that dies is an ``EngineFailure`` of its reference
("WorkerDied"), never a hang. Two one-way pipes, and a thread here that does the sending:
neither side ever waits to send while the other waits to send to it.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from comparisons.oracle.divergence import EngineFailure, engine_failure, package_of
from comparisons.oracle.isolation import read_only
from comparisons.run.engines import REFERENCES
from data.schedule import Step

# One job: (step, params, state, X, Y, keywords): keywords, the step's other inputs (masks).
Job = tuple


def replay(name: str, engine, jobs: list[Job]) -> tuple[list[dict], EngineFailure | None]:
    """The engine's traces of ``jobs``, each step from the parameters and state given with
    it, and its failure where it raises (the last trace is then that step's, empty)."""
    traces = []
    for step, params, state, X, Y, keywords in jobs:
        try:
            engine.set_state(params, state)
            with np.errstate(all="ignore"):
                traces.append(engine.step(X, Y, **keywords))
        except Exception as error:
            failure, _ = engine_failure(name, package_of(engine), step, error)
            return [*traces, {}], failure
    return traces, None


@contextmanager
def reference_workers(engines, jobs: int) -> Iterator[dict[str, Worker]]:
    """Workers for as many of the references ``engines`` names as ``jobs`` processes leave
    room for (this process is one of them), PyTorch first (its import is the longest);
    closed on the way out, whatever happened."""
    started: dict[str, Worker] = {}
    try:
        for name in in_workers(engines, jobs):
            started[name] = Worker(name, REFERENCES[name].partition(":")[0])
        yield started
    except BaseException:  # bad input, an interrupt: nothing to wait for
        for worker in started.values():
            worker.kill()
        raise
    else:
        for worker in started.values():
            worker.close()


def in_workers(engines, jobs: int) -> list[str]:
    """The references among ``engines`` that get a worker of their own when the run may use
    ``jobs`` processes: jobs - 1 of them (this process is one), PyTorch first."""
    return [n for n in REFERENCES if n in engines][: max(0, jobs - 1)]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Worker:
    """A reference engine in a spawned process, behind the calls lockstep and the metrics
    make of an engine: ``submit``/``collect`` a chunk's replay, ``predict``."""

    def __init__(self, name: str, module: str):
        """Start the process, which imports ``module`` (the reference's framework) while
        this one goes on; ``build`` then gives it the engine to make."""
        context = multiprocessing.get_context("spawn")
        self.name = name
        # Two one-way pipes, and a thread here that does the sending: this process never
        # waits to send while the worker waits to send it a reply (a full pipe each way).
        requests, self._requests = context.Pipe(duplex=False)
        self._replies, replies = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(requests, replies, module), name=f"reference {name}", daemon=True
        )
        with _sigint_blocked():  # inherited: a Ctrl-C to the whole group never reaches it
            self._process.start()
        requests.close()
        replies.close()
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_all, name=f"to {name}", daemon=True)
        self._sender.start()
        self._pending: deque[tuple[Step, Step]] = deque()  # each replay's first, last step
        self._discard = 0  # replays submitted and no longer wanted
        self._stash: deque = deque()  # replies received by ``ready``, not yet used
        self._stopped = False

    def build(self, make: Callable, *args) -> None:
        """The worker's engine is ``make(*args)`` (a module-level function and picklable
        arguments); an error making it is raised by the next call that waits on a reply."""
        self._send(("build", make, args))

    def submit(self, jobs: list[Job]) -> None:
        """Replay ``jobs`` in the worker; ``collect`` returns what ``replay`` would have."""
        self._send(("replay", jobs))
        self._pending.append((jobs[0][0], jobs[-1][0]))

    def ready(self) -> bool:
        """Whether the oldest submitted replay's answer has come (``collect`` won't wait)."""
        while self._replies.poll():
            try:
                self._stash.append(self._replies.recv())
            except (EOFError, OSError):
                return True  # collect says so
        kinds = [kind for kind, _ in self._stash]
        return kinds.count("replayed") > self._discard or "raised" in kinds

    def collect(self) -> tuple[list[dict], EngineFailure | None]:
        """The oldest submitted replay's traces and failure, in ``replay``'s form."""
        first, last = self._pending.popleft()
        try:
            return self._reply()
        except _Died as died:
            steps = f"step {first.index}" + (f" to {last.index}" if last is not first else "")
            reason = f"its process {died.reason} while replaying {steps}"
            return [{}], EngineFailure(
                self.name, first.index, first.epoch, first.batch, "WorkerDied", reason, "?"
            )

    def drop_pending(self) -> None:
        """Forget every replay submitted and not collected (a run that stopped early)."""
        self._discard += len(self._pending)
        self._pending.clear()

    def call(self, fn: Callable, *args):
        """``fn(engine, *args)`` in the worker, its value here (its exception raised here)."""
        self._send(("call", fn, args))
        try:
            return self._reply()
        except _Died as died:
            raise RuntimeError(f"the {self.name} reference's process {died.reason}") from None

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.call(_predict, X)

    def stop(self) -> None:
        """Ask the process to end, without waiting for it (``close`` waits)."""
        if not self._stopped:
            self._stopped = True
            self._outbox.put(("close",))
            self._outbox.put(None)

    def kill(self) -> None:
        self._process.kill()
        self.close()

    def close(self) -> None:
        """End the process: asked, then killed if it has not ended within seconds."""
        self.stop()
        self._sender.join(timeout=5)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._requests.close()
        self._replies.close()

    def _send(self, message) -> None:
        self._outbox.put(message)

    def _send_all(self) -> None:
        """The sending thread: each message in order, until None (or the worker is gone:
        the reply waited for then says so)."""
        while (message := self._outbox.get()) is not None:
            try:
                self._requests.send(message)
            except (BrokenPipeError, OSError):
                return

    def _reply(self):
        """The next reply that answers a message (not the engine's "built", not a
        discarded replay's): its value, or the worker's exception raised here."""
        while True:
            if self._stash:
                kind, value = self._stash.popleft()
            else:
                try:
                    kind, value = self._replies.recv()
                except (EOFError, OSError):
                    self._process.join(timeout=5)
                    raise _Died(f"ended with exit status {self._process.exitcode}") from None
            if kind == "raised":
                raise value
            if kind == "replayed" and self._discard:
                self._discard -= 1
            elif kind != "built":
                return value


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """A process started within the block ignores SIGINT from its first instant (an ignored
    signal stays ignored across exec, and Python keeps it so): a Ctrl-C to the whole group
    never reaches a worker, even while it starts up, before ``_serve`` ignores it; the
    oracle stops its workers itself. In this process SIGINT is blocked meanwhile, so that
    one that comes is delivered to its handler when the block ends, not lost."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class _Died(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _predict(engine, X):
    return np.asarray(engine.predict(X))


def _serve(requests, replies, module: str) -> None:
    """The worker: import ``module``, build the engine it is given, then answer messages
    until told to close, or until the oracle's process is gone (its pipes closed). Ctrl-C
    is the oracle's to handle: it ends its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        importlib.import_module(module)
    except Exception:  # building the engine imports it again, and says why
        pass
    engine = None
    try:
        while (message := requests.recv())[0] != "close":
            kind, *rest = message
            try:
                if kind == "build":
                    make, args = rest
                    engine = make(*args)
                    answer = ("built", None)
                elif kind == "replay":
                    jobs = [_frozen(job) for job in rest[0]]
                    answer = ("replayed", replay(engine.name, engine, jobs))
                else:
                    fn, args = rest
                    answer = ("value", fn(engine, *args))
            except Exception as error:
                answer = ("raised", error)
            try:
                replies.send(answer)
            except (pickle.PicklingError, TypeError, AttributeError) as error:
                # sent as a message when it cannot be sent whole (pickling comes first)
                what = f"{type(answer[1]).__name__}: {answer[1]}"
                replies.send(("raised", RuntimeError(f"{what} (not sendable: {error})")))
    except (BrokenPipeError, EOFError, OSError):
        return


def _frozen(job: Job) -> Job:
    """Read-only views of a job's arrays, as the references get in process: a reference
    that writes into its inputs raises in either."""
    step, params, state, X, Y, keywords = job
    params = {k: read_only(v) for k, v in params.items()}
    state = {k: read_only(v) for k, v in state.items()}
    return step, params, state, read_only(X), read_only(Y), keywords
