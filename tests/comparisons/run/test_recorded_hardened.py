"""A recorded set written outside the project: every file read the guarded way
(comparisons/run/files.py), every damage bad input (exit 2, one line naming the file, no
traceback, no hang), and an edit that updates the digests refused as a set whose references
no longer agree with each other, instead of used to blame one of them."""

from __future__ import annotations

import json
import os
import shutil
import struct
import zipfile

import numpy as np
import pytest

from comparisons.cli import main
from comparisons.run.recorded import BUNDLED, MANIFEST, digest, npz_bytes


def _copy(tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(BUNDLED, folder)
    return folder


def _first_file(folder):
    return folder / json.loads((folder / MANIFEST).read_text())["cases"][0]["file"]


def _manifest(edit):
    def make(folder):
        manifest = json.loads((folder / MANIFEST).read_text())
        edit(manifest)
        (folder / MANIFEST).write_text(json.dumps(manifest))

    return make


def flip_a_byte(folder):
    path = _first_file(folder)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(folder):
    path = _first_file(folder)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(folder):
    _first_file(folder).write_bytes(b"")


def nested_manifest(folder):
    (folder / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)


def steps_infinity(folder):
    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text.replace('"steps": ', '"steps": Infinity, "was": ', 1))


def huge_header(folder):
    """A member whose header claims 10,000,000,000 float64s (80 GB) in a few bytes."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000000,), }"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    path = _first_file(folder)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("0/torch/dW1.npy", npy + b"\0" * 64)


def manifest_to_dev_zero(folder):
    (folder / MANIFEST).unlink()
    os.symlink("/dev/zero", folder / MANIFEST)


def manifest_a_fifo(folder):
    (folder / MANIFEST).unlink()
    os.mkfifo(folder / MANIFEST)


def case_file_a_fifo(folder):
    _first_file(folder).unlink()
    os.mkfifo(_first_file(folder))


def case_file_outside(folder):
    _manifest(lambda m: m["cases"][0].update(file="../../etc/passwd"))(folder)


def huge_steps(folder):
    _manifest(lambda m: m["cases"][0].update(steps=10**12))(folder)


def a_pickle(folder):
    path = _first_file(folder)
    with zipfile.ZipFile(path, "w") as archive:
        buffer = __import__("io").BytesIO()
        np.save(buffer, np.array([object()], dtype=object), allow_pickle=True)
        archive.writestr("0/torch/dW1.npy", buffer.getvalue())


DAMAGE = {
    "npz-byte-flipped": (flip_a_byte, "not a readable .npz archive"),
    "npz-truncated": (truncate, "not a readable .npz archive"),
    "npz-empty": (empty, "not a readable .npz archive"),
    "manifest-nested": (nested_manifest, "nested 100000 deep"),
    "manifest-steps-infinity": (steps_infinity, "Infinity is not JSON"),
    "npz-header-80-GB": (huge_header, "its arrays claim more than"),
    "manifest-symlink-to-dev-zero": (manifest_to_dev_zero, "not a regular file"),
    "manifest-fifo": (manifest_a_fifo, "not a regular file"),
    "npz-fifo": (case_file_a_fifo, "not a regular file"),
    "npz-outside-the-folder": (case_file_outside, "a name in the set's folder"),
    "steps-a-trillion": (huge_steps, "steps must be a count"),
    "npz-pickle": (a_pickle, "holds Python objects"),
}


@pytest.mark.parametrize(("damage", "message"), DAMAGE.values(), ids=DAMAGE)
def test_a_damaged_set_is_bad_input_with_one_line(tmp_path, capsys, damage, message):
    folder = _copy(tmp_path)
    damage(folder)
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --recorded {folder}") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "r").exists()


def test_a_scaled_gradient_with_its_digest_updated_is_refused_not_used_to_blame(tmp_path, capsys):
    """The digests are no signature: an edit that updates them passes them. The references
    recorded together agree with each other; a set where they do not is refused (exit 2)
    instead of concluding that one of them is wrong."""
    folder = _copy(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["cases"]:  # the first whose dW1 at step 0 is not all 0 (dropout)
        with np.load(folder / entry["file"]) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if np.any(arrays["0/torch/dW1"]):
            break
    arrays["0/torch/dW1"] = arrays["0/torch/dW1"] * 1.5
    (folder / entry["file"]).write_bytes(npz_bytes(arrays))
    entry["digests"] = {k: digest(v) for k, v in arrays.items()}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert main(["check", "--recorded", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"case {entry['name']!r}: the recorded torch and jax traces disagree" in err, err
    assert "dW1 at step 0" in err and "record it again" in err
    assert not (tmp_path / "r").exists()
