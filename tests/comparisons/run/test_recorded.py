"""Recorded reference traces (comparisons/run/recorded.py): check without any framework.

The bundled set must agree with sound scratch where no framework is installed (the tox env
``scratch`` runs these unmarked tests), refuse a set that was edited or that no longer
matches the covering set, equal what the live references compute now (bitwise in the
recording's environment, within the roundoff allowances elsewhere: ``record.verify``), and
catch every fault of the catalogue that the live references catch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from comparisons.cli import main
from comparisons.faults.catalogue import FAULTS
from comparisons.modes.check import run_check
from comparisons.modes.liberror import KERNEL_VARIANTS
from comparisons.modes.record import record, verify
from comparisons.report.environment import fingerprint, numerics
from comparisons.run.coverage import CASES
from comparisons.run.recorded import BUNDLED, MANIFEST, digest, load_recorded, npz_bytes
from tests.child import child_env


@pytest.fixture(scope="module")
def bundled():
    return load_recorded(BUNDLED)


def test_sound_scratch_agrees_with_the_bundled_set_without_a_framework(tmp_path, capsys):
    assert main(["check", "--recorded", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("AGREE: scratch agrees with torch, jax as recorded on")
    assert "no drift run: it needs live references" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert len(report["cases"]) == len(CASES) and report["recorded"]["folder"] == str(BUNDLED)


def test_the_bundled_set_is_small_and_covers_every_case(bundled):
    size = sum(p.stat().st_size for p in BUNDLED.iterdir())
    # it lives in the repository: about 200 kB a case (each step's state and the references'
    # traces, compressed, and the manifest's digests), a few MB for check's covering set
    assert size < 250e3 * len(CASES)
    # and no file of it over 2 MB, the repository's limit for a committed file (the manifest
    # was 3.1 MB with a whole sha256 per array)
    assert max(p.stat().st_size for p in BUNDLED.iterdir()) < 2e6
    assert [c["name"] for c in bundled.manifest["cases"]] == [c.name for c in CASES]


def _copy(tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(BUNDLED, folder)
    return folder


def test_an_edited_array_is_refused(tmp_path, capsys):
    folder = _copy(tmp_path)
    entry = json.loads((folder / MANIFEST).read_text())["cases"][3]
    with np.load(folder / entry["file"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(k for k in arrays if k.endswith("/torch/dW1"))
    arrays[key] = arrays[key] * 1.5  # a "fix" to make a failing check pass
    (folder / entry["file"]).write_bytes(npz_bytes(arrays))
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{entry['file']} does not match {MANIFEST}" in err and key in err


def _rewrite(folder, index, change):
    """Apply ``change`` to case ``index``'s arrays, and make the manifest's digests agree (an
    edit that a digest check alone would not see)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    entry = manifest["cases"][index]
    with np.load(folder / entry["file"]) as npz:
        arrays = change({k: npz[k] for k in npz.files})
    (folder / entry["file"]).write_bytes(npz_bytes(arrays))
    entry["digests"] = {k: digest(v) for k, v in arrays.items()}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return entry["file"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: {k: v for k, v in a.items() if "/jax/" not in k}, "lacks step 0's jax"),
        (lambda a: {k: v for k, v in a.items() if k != "1/torch/dW1"}, "has step 1's torch with"),
        (
            lambda a: {k: v for k, v in a.items() if not k.startswith("1/params/")},
            "lacks step 1's params",
        ),
        (lambda a: {**a, "99/torch/dW1": a["0/torch/dW1"]}, "holds 99/torch/…, outside its"),
    ],
    ids=["a-reference-removed", "a-tensor-removed", "a-state-removed", "a-step-added"],
)
def test_an_incomplete_set_is_refused_even_with_matching_digests(tmp_path, capsys, change, message):
    folder = _copy(tmp_path)
    name = _rewrite(folder, 0, change)
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{name} {message}" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.pop("cases"),
        lambda m: m.update(references="torch,jax"),
        lambda m: m["cases"][0].pop("digests"),
        lambda m: m.update(cases={"a": 1}),
    ],
    ids=["no-cases", "references-a-string", "no-digests", "cases-a-dict"],
)
def test_a_malformed_manifest_is_bad_input(tmp_path, capsys, edit):
    folder = _copy(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    edit(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{MANIFEST} is malformed" in err and err.count("\n") == 1


def test_a_stale_set_is_refused_with_the_command_that_records_it(tmp_path, capsys):
    folder = _copy(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["cases"][0]["spec"]["lr"] = 0.3  # recorded before the covering set changed
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "recorded with another spec than check runs now (stale)" in err
    assert f"python -m comparisons record --out {folder}" in err


@pytest.mark.slow  # rewrites every file of the set
def test_one_recorded_reference_alone_and_one_not_recorded(tmp_path, capsys):
    assert main(["check", "--recorded", "--engines", "jax", "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.startswith("AGREE: scratch agrees with jax as")
    folder = _copy(tmp_path)  # a set recorded against torch alone
    for i in range(len(CASES)):
        _rewrite(folder, i, lambda a: {k: v for k, v in a.items() if "/jax/" not in k})
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["references"] = ["torch"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert (
        main(
            ["check", "--recorded", str(folder), "--engines", "torch", "--out", str(tmp_path / "t")]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "s")]) == 2
    assert "jax was not recorded (the set has torch)" in capsys.readouterr().err


def test_a_folder_without_a_set_is_bad_input(tmp_path, capsys):
    assert main(["check", "--recorded", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert f"no {MANIFEST} there" in capsys.readouterr().err


def _write(folder, manifest, files):
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.torch
@pytest.mark.jax
def test_a_set_recorded_here_is_verified_bitwise_and_one_from_elsewhere_by_its_allowances(
    tmp_path,
):
    """The rule of ``verify``: in the recording's own environment every bit must be the
    same (one ulp off is caught); a recording whose environment differs in what decides the
    bits (here: a kernel-selecting variable) is judged within the roundoff allowances, which
    the same ulp passes."""
    cases = CASES[:1]
    manifest, files = record(("torch", "jax"), cases)
    here = load_recorded(_write(tmp_path / "here", manifest, files))
    assert verify(here, cases) == (True, [])

    def nudge(arrays):  # one ulp (of its own dtype) on one element of torch's dW1 at step 1
        dW1 = arrays["1/torch/dW1"].copy()
        dW1.flat[0] = np.nextafter(dW1.flat[0], dW1.dtype.type(np.inf))
        return {**arrays, "1/torch/dW1": dW1}

    _rewrite(here.folder, 0, nudge)
    bitwise, problems = verify(load_recorded(here.folder), cases)
    assert bitwise and len(problems) == 1
    assert problems[0].startswith(f"{cases[0].name} step 1 torch: dW1 differs in its bits")

    edited = json.loads((here.folder / MANIFEST).read_text())
    # (a value no environment has: these tests also run with the variables set)
    edited["environment"]["kernel_variables"]["ATEN_CPU_CAPABILITY"] = "another kernel set"
    (here.folder / MANIFEST).write_text(json.dumps(edited))
    assert verify(load_recorded(here.folder), cases) == (False, [])


def test_what_decides_the_bits_of_a_result():
    env = fingerprint(["scratch"])
    assert numerics(env) == numerics(json.loads(json.dumps(env)))  # as a manifest holds it
    for key, value in [
        ("cpu", "another CPU"),
        ("cpu_flags", ["sse4_2"]),
        ("kernel_variables", {**env["kernel_variables"], "MKL_CBWR": "another mode"}),
        ("numpy", "0.0.0 (another)"),
    ]:
        assert numerics({**env, key: value}) != numerics(env), key
    older = {k: v for k, v in env.items() if k not in ("cpu_flags", "kernel_variables")}
    assert numerics(older) != numerics(env)  # a fingerprint of before: never bitwise
    # what does not decide them: the time, the cache, the process's other thread pools
    assert numerics({**env, "device": "gpu", "python": "3.12.0"}) == numerics(env)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
def test_the_bundled_set_equals_the_live_references(bundled):
    """So that it never goes stale silently: every recorded trace equals what the live
    references compute now from the recorded state, as ``verify`` judges (bitwise in the
    recording's environment, else within the roundoff allowances)."""
    bitwise, problems = verify(bundled)
    assert not problems, f"{len(problems)} problems (bitwise={bitwise}), first: {problems[0]}"


# Variables that make PyTorch, oneDNN (which XLA's CPU matmuls use too), MKL and XLA run other
# kernels on the same CPU: a set recorded under them stands for one recorded on another
# machine. On an AVX-512 AMD EPYC each changed the bits of the set (of 7,482 arrays:
# ATEN_CPU_CAPABILITY=default 1,114 of torch's, MKL_CBWR 983, DNNL_MAX_CPU_ISA 503 of jax's,
# xla_cpu_max_isa 13), and the first two put 10 arrays beyond the flat tolerance table.
# the libraries restricted to the oldest x86-64 kernels they have: as on an older CPU
OTHER_KERNELS = KERNEL_VARIANTS["baseline"]


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
def test_a_set_recorded_with_other_kernels_is_verified_by_its_allowances(tmp_path):
    """Green on any x86-64 machine: the set re-recorded, in a child process, with the
    libraries' kernels selected otherwise than here (restricted to older instruction sets, or
    native where this process runs restricted), is judged against the references here within
    each step's roundoff allowances, and agrees; the manifest says why it was not compared
    bit for bit."""
    folder = tmp_path / "other"
    env = {**child_env(), **OTHER_KERNELS}
    if all(os.environ.get(k) == v for k, v in OTHER_KERNELS.items()):
        # this process already runs restricted (the tier run under them): the child, native
        env = {k: v for k, v in child_env().items() if k not in OTHER_KERNELS}
    done = subprocess.run(
        [sys.executable, "-m", "comparisons", "record", "--quiet", "--out", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    other = load_recorded(folder)
    recorded_with = other.manifest["environment"]["kernel_variables"]
    assert all(recorded_with[k] == env.get(k) for k in OTHER_KERNELS)
    assert any(recorded_with[k] != os.environ.get(k) for k in OTHER_KERNELS)
    bitwise, problems = verify(other)
    assert not bitwise
    assert not problems, f"{len(problems)} problems, first: {problems[0]}"


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.jax
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_recorded_traces_catch_what_the_live_references_catch(fault, bundled):
    """Every fault of the catalogue, on check's covering set: the same verdict, the same
    failing case and the same first divergence as the live references give."""
    with np.errstate(all="ignore"), fault.patch():
        # each up to its first failing case: what is compared is that case and its divergence
        recorded = run_check(bundled.references, recorded=bundled, until_first_failure=True)
        live = run_check(bundled.references, until_first_failure=True)
    if live["verdict"] != "agree":
        assert recorded["verdict"] != "agree"
    assert (recorded["verdict"], recorded["failed_case"]) == (live["verdict"], live["failed_case"])
    first = [(r["first_divergence"] or {}) for r in (recorded, live)]
    assert [(d.get("step"), d.get("tensor")) for d in first] == 2 * [
        (first[1].get("step"), first[1].get("tensor"))
    ]
