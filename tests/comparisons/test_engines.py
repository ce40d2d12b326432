"""How the oracle makes its engines (``comparisons/run/engines.py``)."""

from __future__ import annotations

import pytest

from comparisons.run.engines import make_engine
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec


@pytest.mark.torch
def test_the_torch_reference_runs_on_one_thread_on_the_cpu():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        inputs = build_inputs(RunSpec().replace(dataset="synthetic"))
        make_engine("torch", inputs.mlp, inputs.optimizer, inputs.spec.dtype)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_run_inputs_are_read_only_and_each_engine_gets_its_own_copy():
    inputs = build_inputs(RunSpec().replace(dataset="synthetic"))
    X, _ = inputs.train
    assert not X.flags.writeable and not inputs.params0["W1"].flags.writeable
    first, second = inputs.start(), inputs.start()
    first["W1"][0, 0] += 1.0
    assert second["W1"][0, 0] == inputs.params0["W1"][0, 0] != first["W1"][0, 0]
