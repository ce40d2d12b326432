"""Benchmarks: each engine's training step, the machine's matmul bound, and the oracle's cost.

``python -m comparisons bench`` writes ``bench.json`` (every figure), ``bench.md`` (the tables
and the targets, met or not) and ``bench.svg`` (the plots) into ``--out``.

1. Step time. One training step (forward, backward, update) on a fixed batch, per engine, bare:
   nothing is recorded or converted, as each framework is used in practice.
     scratch        ``scratch.training.train_step``, as the scratch engine runs it
     torch          the reference's ``nn.Sequential``, loss and ``torch.optim``, eager
     torch.compile  the same, with forward and loss compiled by inductor (and so the
                    backward, through AOTAutograd); ``optimizer.step`` stays eager
     jax            ``value_and_grad`` of the reference's loss and the optax update, the whole
                    step in one ``jax.jit``
2. The machine's limit. The step's matrix products alone — forward ``A_{l-1} @ W_l``,
   backward ``A_{l-1}.T @ dZ_l`` and ``dZ_l @ W_l.T`` — in NumPy, with scratch's shapes and
   layouts. Every engine computes exactly these products, so FLOP/s = their FLOPs / step time,
   and the bound is their FLOPs / their own time.
3. The oracle's cost. A lockstep run's time over the sum of the engines' bare times over the
   same steps, where the time went, and the heap peak of a whole-run report (tracemalloc:
   Python objects and NumPy arrays; the frameworks' own buffers are not seen), as the number
   of steps and the width grow.

Every time is the median of single-step timings after a warm-up, with min and max, the
garbage collector off (as ``timeit`` does). Thread counts are fixed before anything is timed
and reported: NumPy's BLAS and any OpenMP pool through threadpoolctl, PyTorch's intra-op pool
with ``torch.set_num_threads``; XLA reads ``XLA_FLAGS`` once, when its backend starts, so one
thread is asked for then (with more, XLA runs one thread per core; ``threads`` says when
the flag is certain to hold). The default is one thread
per library: the engines run one after another in one process, and where two pools that
spin while they wait (PyTorch's OpenMP, OpenBLAS) share a few cores, or another process
holds them, a step of a small network takes milliseconds of waiting instead of microseconds.

The rooms: ``command`` (the options, the plan, the run), ``settings`` (the sizes, the model,
the targets' thresholds), ``threads`` (every pool fixed), ``steps`` (the bare steps, their
timing and the matmul bound), ``oracle_cost`` (lockstep against the bare engines, and the main
job), ``targets`` (met or not), ``render`` (bench.md and bench.svg), and ``optional`` (the one
way a framework, or a reference that imports one, is imported: when it is needed).
"""

from comparisons.bench.command import add_arguments, run

__all__ = ["add_arguments", "run"]
