"""The run spec: everything that defines a run, in one validated record.

A spec is written as flat keys (a TOML file, ``--set key=value``, ``report.json``'s
``spec``); the defaults are the project's default configuration, the Occupancy model. The
optimizer's keys (``optimizer``, ``lr``, ``momentum``, …) are held as scratch's own
``Optimizer`` record, whose defaults and checks are the only ones there are. Every key is
checked on the way in, and a bad one raises ``SpecError`` naming the key, what was wrong and
what is allowed.

``engines`` names the references only: the engine under test (scratch, or the one ``--engine``
plugs in) is in every run by itself. "scratch" is still accepted in the list, as it was once
required there, and is dropped: it cannot be a reference.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from comparisons.run.files import FileError, echoed_path, read_text
from scratch.activations import ACTIVATIONS
from scratch.config import MLP, Optimizer, ScratchInputError
from scratch.initializers import INITIALIZERS
from scratch.losses import LOSSES
from scratch.trace_schema import OPTIMIZER_STATE

DATASETS = ("occupancy", "synthetic")
DTYPES = ("float64", "float32")
ENGINES = ("torch", "jax")  # the references a run may name in ``engines``
UNDER_TEST = "scratch"  # accepted in ``engines`` and dropped: the default engine under test
# Bounds on what comes in, so that no input can hang the tool or exhaust its memory before
# it is checked: a config file is a few hundred bytes (1 MiB is plenty), a --set value a few
# dozen characters; a bad value is echoed in at most SHOWN characters.
CONFIG_LIMIT = 1 << 20
SET_LIMIT = 10_000
SHOWN = 200
INT_LIMIT = 2**63 - 1  # NumPy's int64: larger integers overflow in the schedule and the data
MAX_INIT_GAIN = 1e6  # beyond it every unit saturates; at ~1e308 the initializer overflows


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
    dropout: float = 0.0  # the rate p of each hidden unit's dropout in training; 0: none
    batch_norm: bool = False  # batch normalization in every hidden layer, before g
    bn_momentum: float = 0.1  # its running statistics' momentum (PyTorch's convention)
    bn_eps: float = 1e-5  # its ε under the square root
    init: str = "glorot_uniform"
    init_gain: float = 1.0  # scales the initial weights; large gains saturate the outputs
    optimizer: Optimizer = field(default_factory=Optimizer)  # keys: see OPTIMIZER_KEYS
    batch_size: int = 50
    epochs: int = 10
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False
    dtype: str = "float64"
    engines: tuple[str, ...] = ENGINES  # the references; () runs the engine under test alone

    def __post_init__(self) -> None:
        for key, value in self._flat().items():
            _check_type(key, value, HINTS[key])
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("activation", self.activation, tuple(ACTIVATIONS))
        _check_choice("output", self.output, tuple(ACTIVATIONS))
        _check_choice("loss", self.loss, tuple(LOSSES))
        _check_choice("init", self.init, tuple(INITIALIZERS))
        _check_choice("dtype", self.dtype, DTYPES)
        for name, least in LEAST.items():
            if getattr(self, name) < least:
                raise SpecError(f"{name}: must be >= {least}; got {getattr(self, name)}")
        if not 0 < self.init_gain <= MAX_INIT_GAIN:  # NaN fails both comparisons
            raise SpecError(
                f"init_gain: must be a finite number > 0 and <= {MAX_INIT_GAIN:g}; "
                f"got {self.init_gain}"
            )
        if any(n < 1 for n in self.hidden):
            raise SpecError(f"hidden: every width must be >= 1; got {echoed(list(self.hidden))}")
        if not 0 <= self.dropout < 1:  # NaN fails both comparisons
            raise SpecError(f"dropout: must be in [0, 1) (0: no dropout); got {self.dropout}")
        if self.dropout and not self.hidden:
            raise SpecError("dropout: acts on hidden layers, and hidden is empty; add one")
        if self.batch_norm and not self.hidden:
            raise SpecError("batch_norm: acts on hidden layers, and hidden is empty; add one")
        if not 0 <= self.bn_momentum <= 1:
            raise SpecError(f"bn_momentum: must be in [0, 1]; got {self.bn_momentum}")
        if not 0 < self.bn_eps < float("inf"):
            raise SpecError(f"bn_eps: must be a finite number > 0; got {self.bn_eps}")
        if len(set(self.engines)) != len(self.engines):
            raise SpecError(
                f"engines: must list distinct engines; got {echoed(list(self.engines))}"
            )
        for engine in self.engines:
            if engine != UNDER_TEST:
                _check_choice("engines", engine, ENGINES)
        # the references alone: the engine under test is in the run whichever it is
        object.__setattr__(self, "engines", tuple(e for e in self.engines if e != UNDER_TEST))
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
        sizes = (n_features, *self.hidden, n_outputs)
        return MLP(
            sizes,
            self.activation,
            self.output,
            self.loss,
            self.dropout,
            self.batch_norm,
            self.bn_momentum,
            self.bn_eps,
        )

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
            raise SpecError(unknown_key(unknown[0]))
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


# The least value of each integer key (synthetic data needs two features: the spiral's plane).
LEAST = {
    "synthetic_rows": 1,
    "synthetic_features": 2,
    "synthetic_classes": 2,
    "batch_size": 1,
    "epochs": 1,
    "seed": 0,
}

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


def echoed(value: object, limit: int = SHOWN) -> str:
    """``repr(value)``, cut to about ``limit`` characters: how a bad value is echoed."""
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (Python's 4300-digit limit)
        return "a value holding an integer of over 4300 digits"
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


def key_name(key: str) -> str:
    """A key as written in messages: bare when it looks like one, else quoted and cut."""
    return key if key.isidentifier() and len(key) <= 60 else echoed(key, 60)


def unknown_key(key: str) -> str:
    """The message for a key the spec does not have: the nearest known keys first (a typo
    is the usual cause), then every known key."""
    near = difflib.get_close_matches(key, HINTS, n=2) if len(key) <= 60 else []
    guess = f"did you mean {' or '.join(near)}? " if near else ""
    return f"{key_name(key)}: unknown key; {guess}known keys: {', '.join(HINTS)}"


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{key}: unknown value {echoed(value)}; choose one of {', '.join(choices)}")


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
        raise SpecError(f"{key}: expected {_type_name(hint)}; got {echoed(value)}")
    items = value if isinstance(value, tuple) else (value,)
    if any(_is(v, int) and abs(v) > INT_LIMIT for v in items):
        raise SpecError(f"{key}: too large; integers here must lie within ±{INT_LIMIT}")


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
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:  # an integer beyond any float
            raise SpecError(f"{key}: {echoed(value)} is too large for a number") from None
    return value


def parse_assignment(text: str) -> tuple[str, object]:
    """``key=value`` from the command line; the value is read as a TOML value.

    ``lr=0.1``, ``hidden=[16, 8]``, ``shuffle=false``; a bare word is taken as a string,
    so ``activation=tanh`` needs no quotes. A control character (a newline would end the
    TOML value and silently drop what follows it) or a value over SET_LIMIT characters is
    refused.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--set {echoed(text)}: expected key=value, e.g. --set lr=0.1")
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")), None)
    if bad is not None:
        raise SpecError(
            f"--set {echoed(text)}: holds the control character {bad!r}; write the value on "
            "one line, without control characters"
        )
    if len(text) > SET_LIMIT:
        raise SpecError(
            f"--set {echoed(text)}: too long; a --set may hold at most {SET_LIMIT} characters"
        )
    if key not in HINTS:
        raise SpecError(unknown_key(key))
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except (ValueError, RecursionError):  # not TOML (or a number beyond Python's limits)
        value = raw.strip()
    return key, value


def load_spec(
    path: str | Path | None = None,
    assignments: list[str] = (),
    overrides: dict[str, object] | None = None,
) -> RunSpec:
    """The default spec, overridden by a TOML file (flat keys), then by ``key=value`` strings,
    then by ``overrides`` (already parsed values, e.g. from ``--engines``)."""
    config, where = _config_keys(Path(path)) if path is not None else ({}, {})
    later = dict(parse_assignment(a) for a in assignments) | dict(overrides or {})
    try:
        return RunSpec().replace(**(config | later))
    except SpecError as err:
        # "key: …", or "optimizer: key must be …": the file's value is wrong, say where it is
        key = next((w for w in str(err).replace(":", " ").split()[:2] if w in config), None)
        if key is not None and key not in later:
            raise SpecError(f"{where[key]}: {err}") from None
        raise


def _config_keys(path: Path) -> tuple[dict[str, object], dict[str, str]]:
    """A config file's keys, each known and of the right type (a bad one names its line),
    and the file and line of each."""
    text = read_config(path)
    try:
        changes = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{echoed_path(path)}: not valid TOML: {err}") from None
    except (ValueError, RecursionError) as err:  # e.g. an integer of 5000 digits, or [[[[…
        what = "nested too deeply" if isinstance(err, RecursionError) else "a number too long"
        raise SpecError(f"{echoed_path(path)}: not a usable TOML file: {what}") from None
    lines = {}
    for key, value in changes.items():
        lines[key] = where = f"{echoed_path(path)}, line {_line_of(text, key)}"
        if isinstance(value, dict):
            raise SpecError(f"{where}: {key_name(key)}: tables are not used; write keys at the top")
        if key not in HINTS:
            raise SpecError(f"{where}: {unknown_key(key)}")
        try:
            _check_type(key, _coerce(key, value), HINTS[key])
        except SpecError as err:
            raise SpecError(f"{where}: {err}") from None
    return changes, lines


def read_config(path: Path) -> str:
    """The text of a config file: a regular file of at most CONFIG_LIMIT bytes of UTF-8,
    read the guarded way every file is (``files.py``: a FIFO, ``/dev/zero`` or a huge file
    is refused before it is read)."""
    try:
        return read_text(path, CONFIG_LIMIT, "config file", "; give a TOML file")
    except FileError as err:
        message = str(err).replace("; not a config file", "; a config file is a few keys")
        raise SpecError(message) from None


def _line_of(text: str, key: str) -> int:
    """The 1-based line where ``key`` is assigned (1 if it cannot be found)."""
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.split("=", 1)[0].strip().strip("\"'")
        if "=" in line and name == key:
            return number
    return 1
