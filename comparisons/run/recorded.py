"""Recorded reference traces: per-batch verification with neither PyTorch nor JAX installed.

``python -m comparisons record`` steps sound scratch through every case of ``check``'s
covering set and, before each step, loads every reference with scratch's state and records
both: the state the step starts from and each reference's trace of the step. ``check
--recorded DIR`` then loads the engine under test with each recorded state in turn (so that
every step starts where the references started) and compares its trace with the recorded
ones, with the same comparison and allowances as a live run.

A recorded set is a folder::

    manifest.json     format, when and with what it was recorded (the environment
                      fingerprint), and per case: the spec, the schedule's sha256, the number
                      of steps, the file, and a digest per array (``digest``)
    <case>.npz        compressed NumPy arrays, no pickle: ``<step>/state/<name>`` and
                      ``<step>/<reference>/<tensor>`` (each trace holds the reference's
                      state after the step); ``evaluation/params|state/<name>``, the state
                      after the last step, and ``evaluation/<reference>/<split>``, each
                      reference's outputs on every split from it

Loading checks every array against its digest and every case's spec and schedule against the
covering set as it is now: a set that is corrupt, or that no longer matches what ``check``
runs, is refused (exit 2) with the command that records it again. What the digests prove:
that no array changed by accident (a flipped bit, a truncated copy) since the manifest was
written; they are no signature, and an edit that updates them is not caught by them. What
catches such an edit, where it can be caught: the recorded references must agree with each
other within their allowances, as live ones do, and a set where they do not is refused as
changed instead of used to blame one of them (``modes/check.py``); with one reference
recorded there is nothing to hold its traces against. Every file is read the guarded way
(``files.py``): a FIFO, a device, a huge or corrupt archive is bad input, never a hang.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comparisons.run.files import FileError, read_json, read_npz
from comparisons.run.spec import SpecError

FORMAT = 2  # 2: digests of 96 bits (1: a whole sha256, which made the manifest 3.1 MB)
EVALUATION = "evaluation"  # the "step" of the final state and every reference's outputs
MANIFEST = "manifest.json"
# Bounds on what is read (``files.py``), far above the bundled set's (a manifest of ~1.7 MB,
# cases of at most ~1 MB): no file put in a set's place can hang the tool or exhaust memory.
MANIFEST_LIMIT = 16 << 20
CASE_LIMIT = 256 << 20
# The set of check's covering set that comes with the package (``record --out`` re-makes it).
BUNDLED = Path(__file__).resolve().parents[1] / "recorded"
RECORD_COMMAND = "python -m comparisons record --out {folder}"


class RecordedError(SpecError):
    """A recorded set that cannot be used: missing, edited, or stale (bad input, exit 2)."""


def digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order), its first 96 bits: a digest
    guards against accidents, not forgery (the module's docstring), and 2^-96 is chance
    enough; the set's tens of thousands of arrays keep the manifest small."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:24]


def key(step: int | str, part: str, name: str) -> str:
    """An array's name in a case's file. ``part``: "params", "state" (the optimizer's) or a
    reference's name (its trace)."""
    return f"{step}/{part}/{name}"


def by_part(arrays: Mapping[str, np.ndarray]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """A case's arrays by (step, part), each part's by name."""
    parts: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for k, value in arrays.items():
        step, part, name = k.split("/", 2)
        parts.setdefault((step, part), {})[name] = value
    return parts


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@dataclass
class RecordedCase:
    """One case of a recorded set: the state before each step and each reference's trace."""

    name: str
    spec: dict
    schedule_sha256: str
    steps: int
    references: list[str]
    arrays: dict[str, np.ndarray]  # its file's, by ``key``

    def __post_init__(self) -> None:
        self.parts = by_part(self.arrays)  # indexed once, not searched at every step

    def state(self, step: int | str) -> tuple[dict, dict]:
        """(parameters, optimizer state) before ``step`` (``EVALUATION``: after the last),
        as fresh arrays (``t`` an int)."""
        params = {k: np.array(v) for k, v in self.parts[(str(step), "params")].items()}
        state = {k: np.array(v) for k, v in self.parts[(str(step), "state")].items()}
        state["t"] = int(state["t"])
        return params, state

    def trace(self, reference: str, step: int) -> dict[str, np.ndarray]:
        return self.parts.get((str(step), reference), {})


class ReplayEngine:
    """A reference that replays its recorded traces, one step after another, in order."""

    package = "comparisons"

    def __init__(self, case: RecordedCase, reference: str):
        self.case, self.name, self._next = case, reference, 0
        self._params: dict = {}
        self._state: dict = {}

    def set_state(self, params: dict, opt_state: dict) -> None:
        self._params, self._state = dict(params), dict(opt_state)

    def step(self, X: np.ndarray, Y: np.ndarray, masks=None) -> dict[str, np.ndarray]:
        """The next recorded trace (recorded with the step's masks: its M_l are theirs)."""
        if self._next >= self.case.steps:
            raise IndexError(f"{self.case.name}: {self.case.steps} steps were recorded")
        trace = self.case.trace(self.name, self._next)
        self._next += 1
        self._params = {p: trace[p] for p in self._params if p in trace}
        self._state = {n: trace.get(n, v) for n, v in self._state.items()}
        return trace

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError("a recorded reference has traces only, no model to predict")

    def state(self) -> tuple[dict, dict]:
        """The parameters and optimizer state its last recorded trace holds."""
        return dict(self._params), dict(self._state)

    def outputs_from(self, params: dict, state: dict, splits: Mapping) -> dict:
        """Its recorded evaluation outputs on every split (from the recorded final state,
        ``case.state("evaluation")``, which the engine under test is loaded with)."""
        return {s: self.case.parts[(EVALUATION, self.name)][s] for s in splits}

    def params(self) -> dict:
        return dict(self._params)


@dataclass
class Recorded:
    folder: Path
    manifest: dict
    cases: dict[str, RecordedCase]

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(self.manifest["references"])

    def case(
        self, name: str, spec: dict, schedule_sha256: str, names: list[str] | None = None
    ) -> RecordedCase:
        """The recorded case ``name``, refused unless it was recorded from this very spec
        and schedule (the covering set may have changed since), with every tensor ``names``
        lists in every recorded trace."""
        again = RECORD_COMMAND.format(folder=self.folder)
        if name not in self.cases:
            raise RecordedError(f"--recorded {self.folder}: no case {name!r}; record it: {again}")
        case = self.cases[name]
        same_spec = _without_engines(case.spec) == _without_engines(spec)
        if not same_spec or case.schedule_sha256 != schedule_sha256:
            what = "spec" if not same_spec else "batch schedule"
            raise RecordedError(
                f"--recorded {self.folder}: case {name!r} was recorded with another {what} "
                f"than check runs now (stale); record it again: {again}"
            )
        recorded = set(case.trace(case.references[0], 0))
        if names is not None and recorded != set(names):
            odd = sorted(recorded ^ set(names))
            raise RecordedError(
                f"--recorded {self.folder}: case {name!r} has traces with other tensors than "
                f"the trace schema's now ({', '.join(odd[:4])}…); record it again: {again}"
            )
        return case

    def check_references(self, references: tuple[str, ...]) -> None:
        missing = [r for r in references if r not in self.references]
        if missing:
            raise RecordedError(
                f"--recorded {self.folder}: {', '.join(missing)} was not recorded (the set has "
                f"{', '.join(self.references)}); choose among those with --engines"
            )

    def describe(self) -> dict:
        m = self.manifest
        return {
            "folder": str(self.folder),
            "created": m["created"],
            "environment": m["environment"],
        }


def _without_engines(spec: dict) -> dict:
    """A spec but for which engines ran: a case checks any of the recorded references."""
    return {k: v for k, v in spec.items() if k != "engines"}


def load_recorded(folder: str | Path) -> Recorded:
    """A recorded set, every array checked against its digest."""
    folder = Path(folder)
    again = RECORD_COMMAND.format(folder=folder)
    if not os.path.lexists(folder / MANIFEST):
        raise RecordedError(f"--recorded {folder}: no {MANIFEST} there; record a set: {again}")
    try:
        manifest = read_json(folder / MANIFEST, MANIFEST_LIMIT, "recorded set's manifest")
    except FileError as error:
        raise RecordedError(f"--recorded {error}; record it again: {again}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordedError(
            f"--recorded {folder}: {MANIFEST} is not a recorded set of format {FORMAT}; "
            f"record it again: {again}"
        )
    try:
        cases = _load_cases(folder, manifest)
    except RecordedError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise RecordedError(
            f"--recorded {folder}: {MANIFEST} is malformed ({type(error).__name__}: {error}); "
            f"record it again: {again}"
        ) from None
    return Recorded(folder, manifest, cases)


def _load_cases(folder: Path, manifest: dict) -> dict[str, RecordedCase]:
    """Every case, its arrays checked against their digests and complete: every step has
    its starting state and every reference's trace, with the same tensors throughout."""
    again = RECORD_COMMAND.format(folder=folder)
    references = manifest["references"]
    if not (
        isinstance(references, list) and references and all(isinstance(r, str) for r in references)
    ):
        raise ValueError(f"references must be a list of names, not {references!r:.60}")
    str(manifest["created"]), dict(manifest["environment"])
    cases = {}
    for entry in manifest["cases"]:
        if not (isinstance(entry["file"], str) and Path(entry["file"]).name == entry["file"]):
            raise ValueError(
                f"a case's file must be a name in the set's folder: {entry['file']!r:.60}"
            )
        path = folder / entry["file"]
        try:
            arrays = read_npz(path, CASE_LIMIT)
        except FileError as error:
            raise RecordedError(f"--recorded {error}; record it again: {again}") from None
        wrong = sorted(
            set(entry["digests"]) ^ set(arrays)
            | {
                k
                for k in arrays
                if k in entry["digests"] and digest(arrays[k]) != entry["digests"][k]
            }
        )
        if wrong:
            raise RecordedError(
                f"--recorded {folder}: {path.name} does not match {MANIFEST} ({len(wrong)} "
                f"arrays differ, first {wrong[0]!r}): corrupt or changed; record it again: {again}"
            )
        steps = entry["steps"]
        if not (type(steps) is int and 1 <= steps <= len(arrays)):  # not a bool
            raise ValueError(f"steps must be a count of the file's steps, not {steps!r:.60}")
        case = RecordedCase(
            str(entry["name"]),
            dict(entry["spec"]),
            str(entry["schedule_sha256"]),
            steps,
            list(references),
            arrays,
        )
        gap = _incomplete(case.parts, case.steps, references)
        if gap:
            raise RecordedError(
                f"--recorded {folder}: {path.name} {gap} (edited, with its digests); "
                f"record it again: {again}"
            )
        cases[case.name] = case
    return cases


def _incomplete(found: dict, steps: int, references: list[str]) -> str:
    """What a case's arrays (``by_part``) lack, or "": for every step, parameters, ``t`` and
    a trace of every reference, the same tensors at every step; nothing beyond the last step."""
    found = {at: set(arrays) for at, arrays in found.items()}
    parts = ["params", "state", *references]
    wanted = {(str(k), part) for k in [*range(steps), EVALUATION] for part in parts}
    extra = sorted(set(found) - wanted)
    if extra:
        where = f"its {steps} steps and its references ({', '.join(references)})"
        return f"holds {'/'.join(extra[0])}/…, outside {where}"
    for k in [*range(steps), EVALUATION]:
        for part in parts:
            if k == EVALUATION:
                if not found.get((k, part)):
                    return f"lacks the final evaluation's {part}"
                continue
            if not found.get((str(k), part)):
                return f"lacks step {k}'s {part}"
            if found[(str(k), part)] != found[("0", part)]:
                odd = sorted(found[(str(k), part)] ^ found[("0", part)])
                return f"has step {k}'s {part} with other tensors than step 0's ({odd[0]})"
        if "t" not in found[(str(k), "state")]:
            return f"lacks step {k}'s t"
    return ""
