"""Central finite differences: the judge itself. Its agreement with backprop is tested in
test_network.py."""

from __future__ import annotations

import numpy as np
import pytest

from scratch import MLP, init_params, numerical_gradients
from tests.scratch.cases import exactly


@pytest.mark.parametrize("which", ["params", "X"])
def test_finite_differences_refuse_float32_parameters_or_inputs(which):
    mlp = MLP((2, 1), output="identity", loss="mse")
    params = init_params(mlp, 0, dtype="float32" if which == "params" else "float64")
    X = np.ones((2, 2), dtype=np.float32 if which == "X" else np.float64)
    message = "finite differences need float64 parameters and inputs"
    with pytest.raises(ValueError, match=exactly(message)):
        numerical_gradients(mlp, params, X, np.ones((2, 1)))
