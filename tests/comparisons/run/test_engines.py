"""How the oracle makes its engines (``comparisons/run/engines.py``)."""

from __future__ import annotations

from typing import ClassVar

import pytest

from comparisons.run.engines import make_engine, make_references
from comparisons.run.inputs import build_inputs
from comparisons.run.spec import RunSpec, SpecError


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


class Recorder:
    """A stand-in reference that records the device it was made for (or refuses it)."""

    made: ClassVar[list[str]] = []
    refuse = False

    def __init__(self, mlp, optimizer, dtype, device):
        if Recorder.refuse:
            raise ValueError(f"device {device!r}: no GPU here")
        Recorder.made.append(device)


@pytest.fixture
def recorded_devices(monkeypatch):
    import comparisons.run.engines as engines

    stand_in = f"{__name__}:Recorder"
    monkeypatch.setattr(engines, "REFERENCES", {"torch": stand_in, "jax": stand_in})
    monkeypatch.setattr(engines, "persistent_jax_cache", lambda: None)
    monkeypatch.setattr(Recorder, "made", [])
    return Recorder


# make_engine gives a CPU torch engine one thread (torch itself): these need torch installed.
@pytest.mark.torch
def test_device_gpu_is_each_frameworks_own_name_for_its_gpu(recorded_devices):
    inputs = build_inputs(RunSpec().replace(dataset="synthetic"))
    for device in ("cpu", "gpu"):
        make_references(inputs, device)
    assert recorded_devices.made == ["cpu", "cpu", "cuda", "gpu"]  # torch, jax; torch, jax


@pytest.mark.torch
def test_a_gpu_the_framework_does_not_see_is_bad_input_that_says_how_to_go_on(
    recorded_devices, monkeypatch
):
    inputs = build_inputs(RunSpec().replace(dataset="synthetic"))
    monkeypatch.setattr(recorded_devices, "refuse", True)
    with pytest.raises(SpecError, match=r"--device gpu: device 'cuda': no GPU here; .*leave"):
        make_references(inputs, "gpu")
    with pytest.raises(ValueError) as raised:  # on the CPU, a refusal is not the user's input
        make_references(inputs, "cpu")
    assert not isinstance(raised.value, SpecError)
