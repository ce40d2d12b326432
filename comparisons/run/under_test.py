"""The engine under test: scratch by default, or any implementation of the engine contract
(``contract.py``) named ``module:factory`` or registered by an installed package.

Scratch is also the engine this repository verifies most deeply: besides the contract, the
oracle checks its batching function, runs its own training loop in drift and its error terms
against finite differences (what only scratch exposes). A plugged engine is verified through
the contract alone: lockstep against the references, its gradients against finite
differences of its own loss, and its free-running trajectory.

Every output names the engine under test by its display name (``UnderTest.name``): "scratch"
for scratch; for another engine the name of its entry point, or else the last part of its
factory's module (``examples.layered_mlp:make_engine`` is "layered_mlp"). A name a reference
already has ("torch", "jax"), or "scratch", gets "_under_test" added ("mylib.torch:make" is
"torch_under_test"), so that no two engines of a run share a name; a character other than a
letter, a digit, "_" or "-" becomes "_". The factory as given is kept in ``spec``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from comparisons.run.contract import ContractError, EngineUnderTest, check_engine
from comparisons.run.engines import REFERENCES, ScratchEngine
from comparisons.run.spec import SpecError
from scratch.config import MLP, Optimizer

ENTRY_POINTS = "backprop_oracle.engines"
SCRATCH_NAME = "scratch"  # the default engine under test's name
# Names another engine under test cannot have: the references' and the default engine's.
TAKEN = frozenset({SCRATCH_NAME, *REFERENCES})

Factory = Callable[[MLP, Optimizer, str], EngineUnderTest]


@dataclass(frozen=True)
class UnderTest:
    """Which engine a run verifies, how to make one, and where it came from."""

    name: str  # its display name, in every output: "scratch", "layered_mlp", … (see above)
    factory: Factory
    package: str  # the top-level package its code lives in: where a failing frame is looked for
    origin: dict = field(default_factory=dict)  # module, file, version: for the report
    spec: str = SCRATCH_NAME  # as --engine gave it: "scratch", "module:factory" or an entry point

    @property
    def is_scratch(self) -> bool:
        return self.factory is ScratchEngine

    @property
    def code(self) -> str:
        """Its factory as ``module:factory`` (an entry point's too): where a reader looks."""
        module, factory = self.origin.get("module"), self.origin.get("factory")
        return f"{module}:{factory}" if module and factory else self.spec

    def make(self, mlp: MLP, optimizer: Optimizer, dtype: str) -> EngineUnderTest:
        """A new engine; ``ContractError`` where the factory fails or its engine lacks a
        method of the contract."""
        try:
            engine = self.factory(mlp, optimizer, dtype)
        except SystemExit as error:
            raise ContractError(
                f"--engine {self.spec}: the factory called sys.exit({error.code!r}); an "
                "engine's code must raise an exception instead"
            ) from None
        except Exception as error:
            raise ContractError(
                f"--engine {self.spec}: the factory raised {type(error).__name__}: {error}"
            ) from error
        check_engine(engine, f"--engine {self.spec}")
        return engine if self.is_scratch else Contained(engine)

    def describe(self) -> dict:
        """report.json's ``under_test``: its display name (the key of its entries wherever a
        report has one per engine), the factory as given, and where it came from."""
        return {"name": self.name, "spec": self.spec, **self.origin}

    def check_references(self, references) -> None:
        """Another engine is verified against the references: with none, nothing would be
        compared and an AGREE would mean nothing (scratch alone still has its own checks)."""
        if not self.is_scratch and not references:
            raise SpecError(
                f"--engines: {self.name} (--engine {self.spec}) is verified against the "
                f"references; name at least one, e.g. --engines {','.join(REFERENCES)}"
            )


class EngineExit(Exception):
    """Engine code called ``sys.exit`` (raised SystemExit) in a step or another call: the
    engine's failure, an ERROR verdict, never the tool's own exit."""


class Contained:
    """A plugged engine whose calls cannot end the tool: a SystemExit raised in any of its
    methods is an EngineExit, with the engine's frames in its traceback (where it exited).
    Everything else is the engine's own, read and set through."""

    def __init__(self, engine: EngineUnderTest):
        object.__setattr__(self, "_engine", engine)

    def __getattr__(self, name: str):
        value = getattr(self._engine, name)
        if name.startswith("__") or not callable(value):
            return value

        @functools.wraps(value)
        def contained(*args, **kwargs):
            try:
                return value(*args, **kwargs)
            except SystemExit as exit_:
                error = EngineExit(f"{name}() called sys.exit({exit_.code!r})")
                raise error.with_traceback(exit_.__traceback__) from None

        return contained

    def __setattr__(self, name: str, value) -> None:
        setattr(self._engine, name, value)


SCRATCH = UnderTest(
    SCRATCH_NAME,
    ScratchEngine,
    "scratch",
    {"module": "scratch", "file": str(Path(sys.modules["scratch"].__file__).parent)},
)


def load_under_test(text: str | None) -> UnderTest:
    """The engine ``--engine`` names: ``module:factory``, an entry point's name, or scratch."""
    if text is None or text.strip() == SCRATCH_NAME:
        return SCRATCH
    text = text.strip()
    if ":" in text:
        module_name, _, attribute = text.partition(":")
        module = _import(module_name, text)
        name = display_name(module_name.rpartition(".")[2])
    else:
        module_name, attribute, module = _entry_point(text)
        name = display_name(text)
    factory = module
    for part in attribute.split("."):
        try:
            factory = getattr(factory, part, None)
        except (Exception, SystemExit) as error:  # a module's __getattr__ may raise anything
            raise ContractError(
                f"--engine {text}: looking up {attribute!r} in {module_name!r} raised "
                f"{type(error).__name__}: {error}"
            ) from None
        if factory is None:
            raise ContractError(
                f"--engine {text}: module {module_name!r} has no {attribute!r}; give "
                "module:factory, where factory(mlp, optimizer, dtype) returns the engine"
            )
    return _made_by(text, name, factory, module, attribute)


def display_name(wanted: str) -> str:
    """The name an engine under test is shown by: ``wanted`` with every character other than
    a letter, a digit, "_" or "-" made "_", and "_under_test" added to a name taken (by a
    reference or by scratch)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", wanted) or "engine"
    return f"{name}_under_test" if name in TAKEN else name


def under_test_of(engine: str | Factory | None) -> UnderTest:
    """The engine under test from a ``module:factory`` string or the factory itself."""
    if engine is None or isinstance(engine, str):
        return load_under_test(engine)
    if engine is ScratchEngine:
        return SCRATCH
    module = sys.modules.get(getattr(engine, "__module__", None) or "")
    attribute = str(getattr(engine, "__qualname__", engine))
    module_name = getattr(module, "__name__", "?")
    name = display_name(module_name.rpartition(".")[2])
    return _made_by(f"{module_name}:{attribute}", name, engine, module, attribute)


def _made_by(spec: str, name: str, factory, module, attribute: str) -> UnderTest:
    if not callable(factory):
        raise ContractError(
            f"--engine {spec}: {attribute!r} is a {type(factory).__name__}, not a callable "
            "factory(mlp, optimizer, dtype)"
        )
    module_name = getattr(module, "__name__", "")
    package = module_name.split(".")[0]
    origin = {
        "module": module_name,
        "factory": attribute,
        "file": getattr(module, "__file__", None),
        "version": _version(package, module) if package else None,
    }
    return UnderTest(name, factory, package, origin, spec)


def _import(module_name: str, text: str):
    if not module_name or not all(p.isidentifier() for p in module_name.split(".")):
        raise ContractError(f"--engine {text}: {module_name!r} is not a module name")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: the user's own folder
    argv, sys.argv = sys.argv, [module_name]  # a module that parses argv at import sees none
    try:
        return importlib.import_module(module_name)
    except SystemExit as error:
        raise ContractError(
            f"--engine {text}: importing {module_name!r} called sys.exit({error.code!r}); an "
            "engine module must not exit when imported (guard its script part with "
            "if __name__ == '__main__')"
        ) from None
    except ImportError as error:
        raise ContractError(
            f"--engine {text}: cannot import {module_name!r} ({error}); run from the folder "
            "that holds it, or install it"
        ) from error
    except Exception as error:  # the module itself raised while importing
        raise ContractError(
            f"--engine {text}: importing {module_name!r} raised {type(error).__name__}: {error}"
        ) from error
    finally:
        sys.argv = argv


def _entry_point(name: str):
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ContractError(
            f"--engine {name}: no engine of that name (registered in {ENTRY_POINTS}: {known}); "
            "give module:factory, or scratch"
        )
    module_name, _, attribute = found[name].value.partition(":")
    return module_name, attribute, _import(module_name, name)


def _version(package: str, module) -> str | None:
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None
    return str(version)
