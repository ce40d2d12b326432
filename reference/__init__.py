"""The same MLP in PyTorch and in JAX, built from scratch's weights.

Each framework has two modules: the model and its training step as a user of that framework
would write it (``torch_mlp``, ``jax_mlp``), and the engine that puts it behind the engine
contract (``torch_engine.TorchEngine``, ``jax_engine.JaxEngine``): layout, state, compilation.

Both engines implement the one engine contract, ``comparisons/run/contract.py``: the
factory's ``(mlp, optimizer, dtype)`` (here with a fourth argument, ``device``),
``set_state``, ``state``, ``step`` and ``predict``. A reference also keeps to two rules of
its own: it never calls scratch's math (it computes everything with its own framework —
layers, losses, autodiff, optimizers — or it would verify nothing), and its trace has
exactly scratch's keys in scratch's order (``scratch/trace_schema.py``). ``params()``, the
current parameters, is a convenience of theirs beside the contract.
"""
