"""The oracle's jobs — lockstep, drift, gradcheck — from a run spec to a report dict.

Each job returns the report; the command line writes it and chooses the exit status.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from comparisons.arbitration import arbitrate
from comparisons.compare import compare
from comparisons.engines import ScratchEngine, initial_state, make_engine
from comparisons.environment import fingerprint
from comparisons.lockstep import Divergence, drift, lockstep
from comparisons.metrics import evaluate
from comparisons.problem import Problem
from comparisons.report import base_report, drift_report, lockstep_report
from comparisons.tolerances import DRIFT, FINITE_DIFFERENCES
from comparisons.walkthrough import walkthrough
from scratch.gradcheck import numerical_gradients
from scratch.network import forward_backward

OnStep = Callable[[int], None]


def references(problem: Problem, device: str = "cpu") -> dict:
    """One engine per reference named in the spec (scratch is driven by the runners).

    PyTorch gets one intra-op thread on the CPU: the oracle's tensors are far too small for
    threads to pay, and on a small or busy machine its OpenMP pool spins while it waits, so a
    0.3 ms step takes milliseconds. One thread also keeps the numbers independent of the
    core count (the traces are bitwise the same).
    """
    if "torch" in problem.spec.engines and device == "cpu":
        import torch

        torch.set_num_threads(1)
    return {
        name: make_engine(name, problem.mlp, problem.optimizer, problem.spec.dtype, device)
        for name in problem.spec.engines
        if name != "scratch"
    }


def run_lockstep(problem: Problem, on_step: OnStep | None = None, device: str = "cpu") -> dict:
    started = time.perf_counter()
    refs = references(problem, device)
    result = lockstep(problem, refs, on_step=on_step)
    run_s = time.perf_counter() - started
    scratch = ScratchEngine(problem.mlp, problem.optimizer, problem.spec.dtype)
    scratch.set_state(result.final_params, {})
    metrics = evaluate(problem, {"scratch": scratch, **refs})
    steps = walkthrough(result.first_step_traces, problem.mlp, problem.optimizer)
    timings = {"run_s": run_s, "total_s": time.perf_counter() - started}
    env = fingerprint(problem.spec.engines, device)
    report = lockstep_report(problem, result, metrics, steps, env, timings)
    if result.first_divergence is not None:
        report["arbitration"] = arbitrate(problem, result.first_divergence, result.divergent_step)
    return report


def run_drift(problem: Problem, on_step: OnStep | None = None, device: str = "cpu") -> dict:
    started = time.perf_counter()
    refs = references(problem, device)
    result = drift(problem, refs, on_step=on_step)
    scratch = ScratchEngine(problem.mlp, problem.optimizer, problem.spec.dtype)
    scratch.set_state(result.final_params["scratch"], {})
    metrics = evaluate(problem, {"scratch": scratch, **refs})
    verdict = drift_verdict(metrics, problem.spec.dtype)
    timings = {"total_s": time.perf_counter() - started}
    env = fingerprint(problem.spec.engines, device)
    return drift_report(problem, result, metrics, verdict, env, timings)


def drift_verdict(metrics: dict, dtype: str) -> dict:
    """Engines agree when every reference's final loss on every split is within the drift
    tolerance of scratch's; otherwise name the worst (engine, split)."""
    tol = DRIFT[dtype]
    worst = None
    for engine, splits in metrics.items():
        if engine == "scratch":
            continue
        for split, m in splits.items():
            ours = metrics["scratch"][split]["loss"]
            gap = abs(m["loss"] - ours) / abs(ours) if ours else abs(m["loss"])
            if not np.isfinite(gap):
                gap = float("inf")
            if worst is None or gap > worst["max_rel"]:
                worst = {"engine": engine, "split": split, "tensor": "final loss", "max_rel": gap}
    agree = worst is None or worst["max_rel"] <= tol.rtol
    if worst is not None:
        worst["allowed"] = tol.rtol
    return {"agree": agree, "worst": worst, "tolerance": vars(tol)}


def run_gradcheck(problem: Problem, n_steps: int, on_step: OnStep | None = None) -> dict:
    """Backprop against central differences at the first ``n_steps`` steps of the run."""
    started = time.perf_counter()
    X, Y = problem.train
    engine = ScratchEngine(problem.mlp, problem.optimizer, problem.spec.dtype)
    engine.set_state(problem.params0, initial_state(problem.optimizer, problem.params0))
    per_step, first = [], None
    for step in problem.schedule.steps[:n_steps]:
        params = engine.params()
        Xb, Yb = X[step.rows], Y[step.rows]
        analytic = forward_backward(problem.mlp, params, Xb, Yb)
        numeric = numerical_gradients(problem.mlp, params, Xb, Yb)
        results = [
            compare(name, analytic[name], numeric[name], "finite differences", FINITE_DIFFERENCES)
            for name in analytic
            if name in numeric
        ]
        per_step.append(
            {
                "step": step.index,
                "epoch": step.epoch,
                "max_rel": {c.tensor: c.max_rel for c in results},
            }
        )
        bad = [i for i, c in enumerate(results) if not c.ok]
        if bad and first is None:
            upstream = [c.tensor for c in results[: bad[0]]]
            first = Divergence(step.index, step.epoch, step.batch, results[bad[0]], upstream)
        engine.step(Xb, Yb)
        if on_step is not None:
            on_step(step.index)
    timings = {"total_s": time.perf_counter() - started}
    report = base_report("gradcheck", problem, fingerprint(["scratch"]), timings)
    report["verdict"] = "agree" if first is None else "disagree"
    report["engines"] = ["scratch", "finite differences"]
    report["first_divergence"] = first.as_dict() if first else None
    report["finite_difference_tolerance"] = vars(FINITE_DIFFERENCES)
    report["per_step"] = per_step
    return report
