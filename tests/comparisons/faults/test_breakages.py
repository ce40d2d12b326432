"""Five deliberate breakages of scratch: the oracle must fail and name the first bad tensor."""

from __future__ import annotations

import pytest

from comparisons.faults.catalogue import FAULTS_BY_NAME
from comparisons.run.inputs import build_inputs
from tests.comparisons.lockstep_cases import REFERENCES, run, skip_unless_sound, synthetic_spec

# The five breakages the oracle was first built to catch; the whole catalogue is in
# test_faults.py.
FIVE = [
    FAULTS_BY_NAME[name]
    for name in (
        "sigmoid-derivative-sign",
        "missing-1/m",
        "transposed-weight-in-error-term",
        "bias-gradient-one-row",
        "momentum-sign",
    )
]


# Slow: the quick tier runs `check` on every fault of the catalogue (test_check.py).
@pytest.mark.slow
@pytest.mark.parametrize("reference", REFERENCES)
@pytest.mark.parametrize("fault", FIVE, ids=[f.name for f in FIVE])
def test_the_oracle_names_the_first_divergent_tensor(fault, reference):
    spec = synthetic_spec(activation="sigmoid", loss="bce_logits", **fault.spec)
    problem = build_inputs(spec)
    skip_unless_sound(run(problem, reference, stop_at_first=True).agree)
    with fault.patch():
        result = run(problem, reference, stop_at_first=True)
    assert not result.agree
    divergence = result.first_divergence
    assert divergence.comparison.tensor == fault.expected_tensor, divergence.describe()
    assert divergence.step == 0
    assert fault.expected_tensor in divergence.describe()


@pytest.mark.parametrize("fault", FIVE, ids=[f.name for f in FIVE])
def test_each_fault_first_changes_its_expected_tensor_and_is_undone(fault):
    """Without any framework: the patched trace against the sound one, then the restore."""
    from comparisons.oracle.compare import compare_traces
    from comparisons.run.engines import ScratchEngine, initial_state

    problem = build_inputs(synthetic_spec(activation="sigmoid", **fault.spec))
    X, Y = problem.train
    rows = problem.schedule.steps[0].rows

    def first_trace():
        engine = ScratchEngine(problem.mlp, problem.optimizer, problem.spec.dtype)
        engine.set_state(problem.params0, initial_state(problem.optimizer, problem.params0))
        return engine.step(X[rows], Y[rows])

    sound = first_trace()
    with fault.patch():
        broken = first_trace()
    changed = [c.tensor for c in compare_traces(broken, sound, "sound scratch") if not c.ok]
    assert changed and changed[0] == fault.expected_tensor
    assert all(c.ok for c in compare_traces(first_trace(), sound, "sound scratch"))
