"""What the bench measures: the sizes it times, the model's settings, the oracle's runs and
the issue's targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scratch.config import Optimizer

DEFAULT_OUT = Path("reports/bench")
ENGINES = ("scratch", "torch", "torch.compile", "jax")
DTYPES = ("float64", "float32")
# The default Occupancy model's activation, loss and optimizer; a small learning rate, so that
# a batch trained on hundreds of times does not saturate (the time of exp() does not depend on
# its argument, but that of denormal numbers would).
ACTIVATION, LOSS = "sigmoid", "bce_logits"
OPTIMIZER = Optimizer("sgd", lr=0.01)


@dataclass(frozen=True)
class Size:
    """A network and batch to time: ``sizes = (n_0, …, n_L)``, ``repeats`` timed steps."""

    name: str
    sizes: tuple[int, ...]
    batch: int
    repeats: int
    wide: bool = False  # the matmul-bound target applies
    compile: bool = False  # torch.compile is timed here by default (it compiles for ~10-30 s)

    @property
    def label(self) -> str:
        return f"{'-'.join(map(str, self.sizes))} @ {self.batch}"


SIZES = {
    s.name: s
    for s in (
        Size("default", (5, 8, 4, 1), 50, 300, compile=True),  # the Occupancy model
        Size("deep-8x64", (5, *[64] * 8, 1), 50, 200),
        Size("wide-256", (5, 256, 256, 1), 256, 60, wide=True),
        Size("deep-8x512", (5, *[512] * 8, 1), 512, 8),
        Size("wide-1024", (5, 1024, 1024, 1), 1024, 10, wide=True, compile=True),
    )
}
QUICK_SIZES = ("default", "deep-8x64", "wide-256")

# The machine's peak: a square product this large runs at the BLAS kernel's own speed
# (~2 GFLOP, a tenth of a second or so a product on one core of a current CPU).
PEAK_N = 1024

# The oracle's cost: synthetic rows in batches of 50 (or of a width's own batch), 20 steps an
# epoch, so that every batch has one shape (one JAX compilation) and a run of n steps is
# n / 20 epochs. Each width is (hidden widths, batch): the widest at the wide-256 step size's
# batch, so that the cost's growth with the network's width is on record.
ORACLE_ROWS, ORACLE_BATCH = 1000, 50
ORACLE_STEPS, QUICK_ORACLE_STEPS = (100, 400), (40, 160)
ORACLE_WIDTHS = (((8, 4), 50), ((64, 64), 50), ((256, 256), 256), ((1024, 1024), 50))
QUICK_ORACLE_WIDTHS = (((8, 4), 50), ((64, 64), 50), ((256, 256), 256))

# The targets.
TARGET_TORCH_RATIO = 2.0  # torch eager's step / scratch's, at the default size
TARGET_BOUND_RATIO = 1.2  # scratch's step / the bare matmul time, at the wide sizes
TARGET_ORACLE_RATIO = 1.5  # lockstep / the engines' bare time
TARGET_MAIN_JOB_S = 6.0  # `python -m comparisons run` on Occupancy, imports included
