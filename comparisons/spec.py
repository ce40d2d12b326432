"""The run spec: everything that defines a run, in one validated dataclass.

The defaults are the project's default configuration (the Occupancy model); a TOML file
and ``--set key=value`` override them field by field. Every field is checked on the way
in, and a bad one raises ``SpecError`` naming the key, what was wrong and what is allowed.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from scratch.activations import ACTIVATIONS
from scratch.losses import LOSSES
from scratch.network import INITIALIZERS, MLP, ScratchInputError
from scratch.optimizers import OPTIMIZERS, Optimizer

DATASETS = ("occupancy", "synthetic")
DTYPES = ("float64", "float32")
ENGINES = ("scratch", "torch", "jax")


class SpecError(ValueError):
    """A bad run spec: an unknown key, a wrong type or an impossible value."""


@dataclass(frozen=True)
class RunSpec:
    """One run of the model (and, for the oracle, of its references).

    The network is ``(n_features, *hidden, n_outputs)``; n_features and n_outputs come from
    the data set.
    """

    dataset: str = "occupancy"
    synthetic_rows: int = 256  # synthetic data set only
    synthetic_features: int = 5
    synthetic_classes: int = 2
    hidden: tuple[int, ...] = (8, 4)
    activation: str = "sigmoid"
    output: str = "identity"
    loss: str = "bce_logits"
    init: str = "glorot_uniform"
    init_gain: float = 1.0  # scales the initial weights; large gains saturate the outputs
    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    l2: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 50
    epochs: int = 10
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False
    dtype: str = "float64"
    engines: tuple[str, ...] = field(default=ENGINES)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), _HINTS[f.name])
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))
        _check_choice("output", self.output, tuple(ACTIVATIONS))
        _check_choice("loss", self.loss, tuple(LOSSES))
        _check_choice("init", self.init, INITIALIZERS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("dtype", self.dtype, DTYPES)
        for name in ("synthetic_rows", "synthetic_features", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise SpecError(f"{name}: must be >= 1; got {getattr(self, name)}")
        if self.synthetic_classes < 2:
            raise SpecError(f"synthetic_classes: must be >= 2; got {self.synthetic_classes}")
        if not self.init_gain > 0:
            raise SpecError(f"init_gain: must be > 0; got {self.init_gain}")
        if self.seed < 0:
            raise SpecError(f"seed: must be >= 0; got {self.seed}")
        if any(n < 1 for n in self.hidden):
            raise SpecError(f"hidden: every width must be >= 1; got {list(self.hidden)}")
        if not self.engines or len(set(self.engines)) != len(self.engines):
            raise SpecError(f"engines: must list distinct engines; got {list(self.engines)}")
        for engine in self.engines:
            _check_choice("engines", engine, ENGINES)
        if "scratch" not in self.engines:
            raise SpecError("engines: must include 'scratch', the engine under test")
        if self.optimizer in ("momentum", "nesterov") and self.momentum == 0:
            # torch.optim.SGD keeps no momentum buffer at μ = 0, so there is nothing to compare.
            raise SpecError(f"momentum: must be > 0 for optimizer {self.optimizer}; use sgd for 0")
        try:
            self.optimizer_config()
        except ValueError as err:
            raise SpecError(f"optimizer: {err}") from None
        try:
            self.mlp(n_features=1, n_outputs=self.n_outputs)
        except ScratchInputError as err:
            raise SpecError(f"loss/output: {err}") from None

    @property
    def n_outputs(self) -> int:
        """Outputs of the network: one logit or probability for two classes, else one per class."""
        classes = 2 if self.dataset == "occupancy" else self.synthetic_classes
        if self.loss == "softmax_cross_entropy":
            return classes
        return 1 if classes == 2 else classes

    def mlp(self, n_features: int, n_outputs: int) -> MLP:
        return MLP((n_features, *self.hidden, n_outputs), self.activation, self.output, self.loss)

    def optimizer_config(self) -> Optimizer:
        return Optimizer(
            self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            l2=self.l2,
            weight_decay=self.weight_decay,
        )

    def to_dict(self) -> dict:
        """The resolved spec, JSON-ready (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    def replace(self, **changes: object) -> RunSpec:
        unknown = sorted(set(changes) - set(_HINTS))
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown key; known keys: {', '.join(_HINTS)}")
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})


_HINTS = typing.get_type_hints(RunSpec)


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{key}: unknown value {value!r}; choose one of {', '.join(choices)}")


def _type_name(hint: object) -> str:
    if typing.get_origin(hint) is tuple:
        return f"a list of {typing.get_args(hint)[0].__name__}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[hint]


def _check_type(key: str, value: object, hint: object) -> None:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        ok = isinstance(value, tuple) and all(_is(v, item) for v in value)
    else:
        ok = _is(value, hint)
    if not ok:
        raise SpecError(f"{key}: expected {_type_name(hint)}; got {value!r}")


def _is(value: object, kind: object) -> bool:
    """isinstance, except that a bool is not an int and an int is also a float."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)  # type: ignore[arg-type]


def _coerce(key: str, value: object) -> object:
    """Lists from TOML become tuples; ints given for float fields become floats."""
    hint = _HINTS[key]
    if isinstance(value, list):
        return tuple(value)
    if hint is float and _is(value, float):
        return float(value)  # type: ignore[arg-type]
    return value


def parse_assignment(text: str) -> tuple[str, object]:
    """``key=value`` from the command line; the value is read as a TOML value.

    ``lr=0.1``, ``hidden=[16, 8]``, ``shuffle=false``; a bare word is taken as a string,
    so ``activation=tanh`` needs no quotes.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {text!r}: expected key=value, e.g. --set lr=0.1")
    if key not in _HINTS:
        raise SpecError(f"{key}: unknown key; known keys: {', '.join(_HINTS)}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def load_spec(path: str | Path | None = None, assignments: list[str] = ()) -> RunSpec:
    """The default spec, overridden by a TOML file (flat keys), then by ``key=value`` strings."""
    changes: dict[str, object] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise SpecError(f"{path}: cannot read the config file ({err.strerror})") from None
        try:
            changes.update(tomllib.loads(text))
        except tomllib.TOMLDecodeError as err:
            raise SpecError(f"{path}: not valid TOML: {err}") from None
        nested = [k for k, v in changes.items() if isinstance(v, dict)]
        if nested:
            raise SpecError(f"{path}: {nested[0]}: tables are not used; write keys at the top")
    changes.update(parse_assignment(a) for a in assignments)
    return RunSpec().replace(**changes)
