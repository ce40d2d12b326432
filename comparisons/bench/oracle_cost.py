"""The oracle's cost: a lockstep run's time over the engines' bare time over the same steps,
where that time went, the heap peak of a whole-run report; and the main job's wall time."""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from comparisons.bench.settings import ORACLE_BATCH, ORACLE_ROWS
from comparisons.bench.steps import bare_step, gc_off
from comparisons.modes.lockstep import run_lockstep
from comparisons.oracle.lockstep import lockstep
from comparisons.report.atomic_folder import json_safe
from comparisons.run.engines import make_engine
from comparisons.run.inputs import RunInputs, build_inputs
from comparisons.run.spec import RunSpec


class Timed:
    """An engine that adds up the seconds spent in its set_state and step (the references'
    recording and conversion, inside a lockstep run)."""

    def __init__(self, engine):
        self.engine, self.seconds = engine, 0.0
        self.name = engine.name

    def set_state(self, params, opt_state) -> None:
        start = time.perf_counter()
        self.engine.set_state(params, opt_state)
        self.seconds += time.perf_counter() - start

    def step(self, X, Y):
        start = time.perf_counter()
        trace = self.engine.step(X, Y)
        self.seconds += time.perf_counter() - start
        return trace

    def predict(self, X):
        return self.engine.predict(X)

    def params(self):
        return self.engine.params()


def oracle_spec(
    hidden: tuple[int, ...], steps: int, references: list[str], batch: int = ORACLE_BATCH
) -> RunSpec:
    """The default model's settings on synthetic data (5 features, 2 classes), ``hidden``
    widths, ``steps`` steps of one batch shape (``batch`` rows, 20 batches an epoch)."""
    per_epoch = ORACLE_ROWS // ORACLE_BATCH
    return RunSpec(
        dataset="synthetic",
        synthetic_rows=batch * per_epoch,
        synthetic_features=5,
        hidden=tuple(hidden),
        batch_size=batch,
        epochs=steps // per_epoch,
        engines=tuple(references),
    )


def oracle_cost(
    hidden: tuple[int, ...],
    steps: int,
    references: list[str],
    device: str = "cpu",
    batch: int = ORACLE_BATCH,
) -> dict:
    """Lockstep time against the engines' bare time over the same steps (the references' on
    ``device``), where it went, and the heap peak of the whole-run report."""
    inputs = build_inputs(oracle_spec(hidden, steps, references, batch))
    mlp, opt, dtype = inputs.mlp, inputs.optimizer, inputs.spec.dtype
    refs = {name: Timed(make_engine(name, mlp, opt, dtype, device)) for name in references}
    lockstep(inputs, refs, steps=inputs.schedule.steps[:2])  # compiles JAX's step
    for ref in refs.values():
        ref.seconds = 0.0
    with gc_off():
        start = time.perf_counter()
        result = lockstep(inputs, refs)
        lockstep_s = time.perf_counter() - start
    bare = {name: bare_seconds(inputs, name, device) for name in ("scratch", *references)}
    traced = {name: ref.seconds for name, ref in refs.items()}
    report, peak = _report_with_peak(inputs, device)
    return {
        "hidden": list(hidden),
        "sizes": list(mlp.sizes),
        "batch": batch,
        "steps": result.steps_run,
        "agree": result.agree,
        "lockstep_s": lockstep_s,
        "bare_s": bare,
        "bare_total_s": sum(bare.values()),
        "ratio": lockstep_s / sum(bare.values()),
        "breakdown_s": {
            "scratch (bare)": bare["scratch"],
            **{f"{name}: load state, step, trace to NumPy": s for name, s in traced.items()},
            "comparison and bookkeeping": lockstep_s - bare["scratch"] - sum(traced.values()),
        },
        "report_peak_mib": peak / 2**20,
        "report_json_kib": len(json.dumps(json_safe(report))) / 2**10,
    }


def bare_seconds(inputs: RunInputs, engine: str, device: str = "cpu") -> float:
    """Seconds of ``engine``'s bare step over the run's batches, after one to warm up."""
    X, Y = inputs.train
    mlp, opt, params0 = inputs.mlp, inputs.optimizer, inputs.params0
    step = bare_step(engine, mlp, opt, params0, inputs.spec.dtype, device)
    batches = [step.batch(X[s.rows], Y[s.rows]) for s in inputs.schedule.steps]
    step(batches[0])  # compiles JAX's step
    with gc_off():
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        return time.perf_counter() - start


def _report_with_peak(inputs: RunInputs, device: str) -> tuple[dict, int]:
    """A whole lockstep run's report, and the heap's peak in bytes while it was made."""
    gc.collect()
    tracemalloc.start()
    try:
        report = run_lockstep(inputs, device=device)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


def time_main_job(device: str = "cpu") -> dict:
    """``python -m comparisons run`` on Occupancy, as ``tox -e report`` runs it (its own
    threads: the bench's settings do not reach it), wall time from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r")
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "comparisons", "run", "--out", out, "--quiet"]
            + (["--device", device] if device != "cpu" else []),
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        timings = {}
        with contextlib.suppress(OSError, ValueError):
            timings = json.loads((Path(tmp) / "r" / "report.json").read_text())["timings"]
    return {
        "wall_s": wall,
        "exit_status": done.returncode,
        "first_line": (done.stdout.strip().splitlines() or [""])[0][:200],
        "timings": timings,
    }
