"""The same MLP in PyTorch and in JAX, built from scratch's weights.

Each framework has two modules: the model and its training step as a user of that framework
would write it (``torch_mlp``, ``jax_mlp``), and the engine that puts it behind the contract
below (``torch_engine.TorchEngine``, ``jax_engine.JaxEngine``): layout, state, compilation.

The engine contract both references implement (the oracle in ``comparisons`` drives them):

``Engine(mlp, optimizer, dtype="float64", device="cpu")``
    ``mlp`` and ``optimizer`` are scratch's configuration dataclasses
    (``scratch.network.MLP``, ``scratch.optimizers.Optimizer``): names and hyperparameters
    only. A reference never calls scratch's math: it computes everything with its own
    framework — layers, losses, autodiff, optimizers — or it would verify nothing.
``set_state(params, opt_state)``
    Load parameters in the canonical layout (``Wl: (n_{l-1}, n_l)``, ``bl: (n_l,)``) and
    scratch's optimizer state (``{"t": t, "momentum_W1": …, "adam_m_W1": …, …}``).
``step(X, Y, masks=None) -> trace``
    One training step on the batch ``X: (B, n_0)``, ``Y: (B, n_L)``, from the current state;
    the engine keeps the new state. ``masks``: with dropout (``mlp.dropout`` > 0), and only
    then, the step's keep masks ``{"M1": (B, n_1), …}``, given by the oracle, never drawn.
    The trace has exactly scratch's keys in scratch's order (``scratch/trace_schema.py``
    defines them) as NumPy arrays in the canonical layout and the engine's dtype.
``predict(X) -> A_L``   the network's output ``(n, n_L)`` with the current parameters.
``params() -> dict``    the current parameters, canonical layout.
"""
