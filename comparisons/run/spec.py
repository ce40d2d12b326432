"""The run spec: everything that defines a run, in one validated record.

A spec is written as flat keys (a TOML file, ``--set key=value``, ``report.json``'s
``spec``); the defaults are the project's default configuration, the Occupancy model. The
optimizer's keys (``optimizer``, ``lr``, ``momentum``, …) are held as scratch's own
``Optimizer`` record, whose defaults and checks are the only ones there are. Every key is
checked on the way in, and a bad one raises ``SpecError`` naming the key, what was wrong and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from scratch.activations import ACTIVATIONS
from scratch.config import MLP, Optimizer, ScratchInputError
from scratch.initializers import INITIALIZERS
from scratch.losses import LOSSES
from scratch.trace_schema import OPTIMIZER_STATE

DATASETS = ("occupancy", "synthetic")
DTYPES = ("float64", "float32")
ENGINES = ("scratch", "torch", "jax")


class SpecError(ValueError):
    """A bad run spec: an unknown key, a wrong type or an impossible value."""


@dataclass(frozen=True)
class RunSpec:
    """One run of the model (and, for the oracle, of its references).

    The network is ``(n_features, *hidden, n_outputs)``; n_features and n_outputs come from
    the data set. Build one with ``RunSpec().replace(key=value, …)`` or ``load_spec``.
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
    optimizer: Optimizer = field(default_factory=Optimizer)  # keys: see OPTIMIZER_KEYS
    batch_size: int = 50
    epochs: int = 10
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False
    dtype: str = "float64"
    engines: tuple[str, ...] = ENGINES

    def __post_init__(self) -> None:
        for key, value in self._flat().items():
            _check_type(key, value, HINTS[key])
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))
        _check_choice("output", self.output, tuple(ACTIVATIONS))
        _check_choice("loss", self.loss, tuple(LOSSES))
        _check_choice("init", self.init, tuple(INITIALIZERS))
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

    def _flat(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            if f.name == "optimizer":
                out.update({k: getattr(self.optimizer, a) for k, a in OPTIMIZER_KEYS.items()})
            else:
                out[f.name] = getattr(self, f.name)
        return out

    def to_dict(self) -> dict:
        """The resolved spec as flat keys, JSON-ready (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._flat().items()}

    def replace(self, **changes: object) -> RunSpec:
        """A copy with some flat keys changed; every key and value is checked."""
        unknown = sorted(set(changes) - set(HINTS))
        if unknown:
            raise SpecError(f"{unknown[0]}: unknown key; known keys: {', '.join(HINTS)}")
        changes = {k: _coerce(k, v) for k, v in changes.items()}
        for key, value in changes.items():
            _check_type(key, value, HINTS[key])
        if "optimizer" in changes:
            _check_choice("optimizer", changes["optimizer"], tuple(OPTIMIZER_STATE))
        settings = {OPTIMIZER_KEYS[k]: changes.pop(k) for k in list(changes) if k in OPTIMIZER_KEYS}
        if settings:
            try:
                changes["optimizer"] = dataclasses.replace(self.optimizer, **settings)
            except ScratchInputError as err:
                raise SpecError(f"optimizer: {err}") from None
        return dataclasses.replace(self, **changes)


# The optimizer's flat keys and the Optimizer fields that hold them.
OPTIMIZER_KEYS = {
    "optimizer": "name",
    **{f.name: f.name for f in dataclasses.fields(Optimizer) if f.name != "name"},
}


def _flat_hints() -> dict[str, object]:
    run, opt = typing.get_type_hints(RunSpec), typing.get_type_hints(Optimizer)
    out: dict[str, object] = {}
    for key, hint in run.items():
        if key == "optimizer":
            out.update({k: opt[a] for k, a in OPTIMIZER_KEYS.items()})
        else:
            out[key] = hint
    return out


HINTS = _flat_hints()  # every flat key, in the order the spec lists them


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
    hint = HINTS[key]
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
    if key not in HINTS:
        raise SpecError(f"{key}: unknown key; known keys: {', '.join(HINTS)}")
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
