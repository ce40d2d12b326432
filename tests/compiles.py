"""How many programs JAX compiles, and which tests pay for them (``--jax-compiles``).

    pytest --jax-compiles -m "slow and not realdata" ...

counts XLA's backend compilations per test — each is a program JAX did not find in memory or
in its persistent cache — and ends the run with their number and seconds, per test module
and for the tests that paid the most. With the persistent cache emptied first (or pointed at
a new folder with ``BACKPROP_ORACLE_CACHE``) it counts the distinct programs a tier compiles,
which is what a cold CI run pays; under xdist each worker appends its counts to one file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest

EVENT = "/jax/core/compile/backend_compile_duration"
_counts: dict[str, list[float]] = defaultdict(list)
_current = {"test": "(outside a test)"}


def _listener(event: str, seconds: float, **_kwargs) -> None:
    if event == EVENT:
        _counts[_current["test"]].append(seconds)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--jax-compiles",
        action="store_true",
        help="count JAX's compilations per test and summarize them at the end",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--jax-compiles"):
        return
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        fd, name = tempfile.mkstemp(prefix="jax-compiles-", suffix=".jsonl")
        os.close(fd)
        os.environ["BACKPROP_ORACLE_COMPILES_FILE"] = name  # inherited by the workers
        config._compiles_file = Path(name)  # type: ignore[attr-defined]
    try:
        import jax.monitoring
    except ImportError:
        return
    jax.monitoring.register_event_duration_secs_listener(_listener)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    _current["test"] = item.nodeid
    try:
        return (yield)
    finally:
        _current["test"] = "(outside a test)"


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("BACKPROP_ORACLE_COMPILES_FILE")
    if path and session.config.getoption("--jax-compiles"):
        with open(path, "a", encoding="utf-8") as f:
            for test, seconds in _counts.items():
                f.write(json.dumps({"test": test, "seconds": seconds}) + "\n")


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    path = getattr(config, "_compiles_file", None)
    if path is None:
        return
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    path.unlink()
    per_module: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        per_module[row["test"].split("::")[0]] += row["seconds"]
    total = [s for row in rows for s in row["seconds"]]
    write = terminalreporter.write_line
    terminalreporter.section("JAX compilations")
    write(f"{len(total)} programs compiled in {sum(total):.1f} s of compile time")
    for module, seconds in sorted(per_module.items(), key=lambda kv: -sum(kv[1]))[:15]:
        write(f"  {len(seconds):5d} in {sum(seconds):7.1f} s  {module}")
    write("the tests that compiled the most:")
    for row in sorted(rows, key=lambda r: -sum(r["seconds"]))[:10]:
        write(f"  {len(row['seconds']):5d} in {sum(row['seconds']):7.1f} s  {row['test']}")
