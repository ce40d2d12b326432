"""The bad-input catalogue: every bad input ends in exit 2 and one line on stderr naming the
key, file or line (no traceback), and nothing is written or deleted: each case runs
``comparisons.cli.main`` in a fresh current folder (where the default ``reports/…`` would
land too), which is compared before and after."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import stat
from pathlib import Path

import pytest
import requests

import data.occupancy as occupancy
from comparisons import cli
from data import download_occupancy

SMALL = ["--set", "dataset=synthetic", "--set", "synthetic_rows=12", "--set", "epochs=1"]
RUN = ["run", *SMALL, "--engines", "scratch"]
SOURCE = Path(os.environ.get("OCCUPANCY_DATA_DIR") or "/work/shared/data/occupancy")
FILES = ("datatraining.txt", "datatest.txt", "datatest2.txt")


def case(name, argv, expected, setup=None):
    argv = shlex.split(argv) if isinstance(argv, str) else argv
    return pytest.param(argv, expected, setup, id=name)


# --- what each case needs in its folder ---------------------------------------------------


def layout(entries: dict[str, str | None]):
    """Files (with their text) and folders (None) to make, by path."""

    def make(tmp, mp):
        for name, text in entries.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir() if text is None else path.write_text(text, encoding="utf-8")

    return make


foreign_folder = layout({"x/important.txt": "keep me"})
a_file = layout({"x": "a file"})
ours_plus_notes = layout(
    {"x/.backprop-oracle-report": '{"files": ["report.json"]}', "x/report.json": "{}"}
    | {"x/notes.txt": "mine"}
)
bogus_marker = layout({"x/.backprop-oracle-report": "not json", "x/report.json": "{}"})
a_subfolder = layout({"x/photos": None})


def config(text: str | bytes):
    def make(tmp, mp):
        path = tmp / "c.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))

    return make


def a_fifo(tmp, mp):
    os.mkfifo(tmp / "c.toml")


def a_big_config(tmp, mp):
    with open(tmp / "c.toml", "wb") as f:
        f.truncate(2 << 20)  # sparse: 2 MiB of NULs on no disk


def little_memory(tmp, mp):
    mp.setattr("comparisons.run.inputs.available_memory", lambda: 4 << 30)


def data_copy(edit=None):
    """OCCUPANCY_DATA_DIR at a copy of the data, with ``edit(folder)`` applied."""

    def make(tmp, mp):
        folder = tmp / "data"
        folder.mkdir()
        for name in FILES:
            shutil.copyfile(SOURCE / name, folder / name)
        if edit is not None:
            edit(folder)
        mp.setenv("OCCUPANCY_DATA_DIR", str(folder))

    return make


def flip_a_byte(folder):
    path = folder / "datatest2.txt"
    content = bytearray(path.read_bytes())
    content[5000] ^= 0x20
    path.write_bytes(bytes(content))


def make_huge(folder):
    with open(folder / "datatraining.txt", "r+b") as f:
        f.truncate(4 << 30)  # sparse: 4 GiB that take no disk


def replace_by_folder(folder):
    (folder / "datatest.txt").unlink()
    (folder / "datatest.txt").mkdir()


def replace_by_fifo(folder):
    (folder / "datatraining.txt").unlink()
    os.mkfifo(folder / "datatraining.txt")


def data_dir(value):
    def make(tmp, mp):
        (tmp / "a-file").write_text("not a folder")
        mp.setenv("OCCUPANCY_DATA_DIR", str(tmp / value))

    return make


def cache_at(value, offline=False):
    """No OCCUPANCY_DATA_DIR; the download cache at ``value`` (in tmp); no network."""

    def make(tmp, mp):
        (tmp / "a-file").write_text("not a folder")
        mp.delenv("OCCUPANCY_DATA_DIR", raising=False)
        mp.setenv("BACKPROP_ORACLE_CACHE", str(tmp.parent / value if offline else tmp / value))
        if offline:
            mp.setattr(
                occupancy,
                "download_occupancy",
                functools.partial(download_occupancy, downloader=_no_network),
            )

    return make


def _no_network(url, output_file, pooch):
    raise requests.exceptions.ConnectionError("Failed to resolve 'archive.ics.uci.edu'")


# --- the catalogue ------------------------------------------------------------------------
# (name, argv: a string split like a shell's, or a list, what stderr must hold, setup)

RUN = " ".join(RUN)
SET = RUN + " --set"
GRAD = "gradcheck " + " ".join(SMALL)
MARKER_TOO = "(.backprop-oracle-report, report.json)"
OUT = [
    case(
        "out-not-ours",
        f"{RUN} --out x",
        "--out x holds files this tool did not write (important.txt)",
        foreign_folder,
    ),
    case(
        "out-ours-plus-a-user-file", f"{RUN} --out x", "did not write (notes.txt)", ours_plus_notes
    ),
    case("out-bogus-marker", f"{RUN} --out x", f"did not write {MARKER_TOO}", bogus_marker),
    case("out-holds-a-folder", f"{RUN} --out x", "did not write (photos)", a_subfolder),
    case("out-is-a-file", f"{RUN} --out x", "--out x: a file, not a folder", a_file),
    case("out-through-a-file", f"{RUN} --out x/y", "x is a file, not a folder", a_file),
    case("out-under-a-file", f"{RUN} --out x/y/z", "x is a file, not a folder", a_file),
    case("out-dot", f"{RUN} --out .", "--out .: the current folder"),
    case("out-empty", f"{RUN} --out ''", "--out .: the current folder"),
    case("out-dotdot", f"{RUN} --out ..", "the current folder (or one above it)"),
    case("out-root", f"{RUN} --out /", "the current folder (or one above it)"),
    case("out-proc", f"{RUN} --out /proc/report", "under /proc, a file system of the kernel"),
    case("out-proc-self", f"{RUN} --out /proc/self/out", "under /proc"),
    case("out-sys", f"{RUN} --out /sys/out", "under /sys"),
    case("out-dev-null", f"{RUN} --out /dev/null", "under /dev"),
    case("out-name-too-long", f"{RUN} --out {'r' * 300}", "a folder name over 200 bytes"),
    case("out-nul-byte", [*RUN.split(), "--out", "a\0b"], "not a usable path (it holds a NUL"),
    case("drift-out-not-ours", f"drift {' '.join(SMALL)} --out x", "did not write", foreign_folder),
    case("gradcheck-out-not-ours", f"{GRAD} --out x", "did not write", foreign_folder),
    case("check-out-not-ours", "check --out x", "did not write", foreign_folder),
    case("faults-out-not-ours", "faults --out x", "did not write", foreign_folder),
    case("bench-out-not-ours", "bench --quick --out x", "did not write", foreign_folder),
    case("bench-out-is-a-file", "bench --out x", "a file, not a folder", a_file),
    case("check-out-dot", "check --out .", "the current folder"),
]
DROPOUT_RANGE = "dropout: must be in [0, 1) (0: no dropout)"
SPEC = [
    case("unknown-key", f"{SET} colour=red", "colour: unknown key; known keys: dataset"),
    case("unicode-key", f"{SET} épochs=1", "épochs: unknown key"),
    case("not-an-integer", f"{SET} epochs=two", "epochs: expected an integer; got 'two'"),
    case("negative-batch", f"{SET} batch_size=-5", "batch_size: must be >= 1; got -5"),
    case("zero-batch", f"{SET} batch_size=0", "batch_size: must be >= 1; got 0"),
    case("fractional-batch", f"{SET} batch_size=2.5", "batch_size: expected an integer"),
    case("zero-epochs", f"{SET} epochs=0", "epochs: must be >= 1"),
    case("unknown-activation", f"{SET} activation=swish", "activation: unknown value 'swish'"),
    case("unknown-dataset", f"{SET} dataset=mnist", "dataset: unknown value 'mnist'"),
    case("unknown-init", f"{SET} init=lecun", "init: unknown value 'lecun'"),
    case("unknown-optimizer", f"{SET} optimizer=adagrad", "optimizer: unknown value"),
    case("unknown-dtype", f"{SET} dtype=float16", "dtype: unknown value 'float16'"),
    case("init-gain-inf", f"{SET} init_gain=inf", "init_gain: must be a finite number > 0"),
    case("init-gain-nan", f"{SET} init_gain=nan", "init_gain: must be a finite number > 0"),
    case("init-gain-zero", f"{SET} init_gain=0", "init_gain: must be a finite number > 0"),
    case("init-gain-huge", f"{SET} init_gain=1e308", "init_gain: must be a finite number"),
    case("l2-nan", f"{SET} l2=nan", "l2 must be a finite number; got nan"),
    case("l2-inf", f"{SET} l2=inf", "l2 must be a finite number; got inf"),
    case("l2-negative", f"{SET} l2=-1", "l2 and weight_decay >= 0"),
    case("eps-inf", f"{SET} eps=inf", "eps must be a finite number; got inf"),
    case("dropout-one", f"{SET} dropout=1", f"{DROPOUT_RANGE}; got 1.0"),
    case("dropout-nan", f"{SET} dropout=nan", f"{DROPOUT_RANGE}; got nan"),
    case("dropout-text", f"{SET} dropout=half", "dropout: expected a number; got 'half'"),
    case(
        "batch-norm-one-row-batch",
        f"{SET} batch_norm=true --set synthetic_rows=11 --set batch_size=5",
        "batch_norm: a batch of this schedule has 1 row (11 rows in batches of 5)",
    ),
    case("bn-momentum-range", f"{SET} bn_momentum=2", "bn_momentum: must be in [0, 1]; got 2.0"),
    case("bn-eps-zero", f"{SET} bn_eps=0", "bn_eps: must be a finite number > 0; got 0.0"),
    case("batch-norm-not-bool", f"{SET} batch_norm=1", "batch_norm: expected true or false"),
    case(
        "dropout-without-hidden-layers",
        f"{SET} dropout=0.5 --set hidden=[]",
        "dropout: acts on hidden layers, and hidden is empty; add one",
    ),
    case("eps-zero", f"{SET} eps=0", "eps must be > 0"),
    case("momentum-nan", f"{SET} momentum=nan", "momentum must be a finite number"),
    case("momentum-one", f"{SET} momentum=1", "momentum must be in [0, 1)"),
    case("beta1-inf", f"{SET} beta1=inf", "beta1 must be a finite number"),
    case("beta2-negative", f"{SET} beta2=-0.1", "beta2 must be in [0, 1)"),
    case(
        "decay-inf",
        f"{SET} optimizer=adamw --set weight_decay=inf",
        "weight_decay must be a finite",
    ),
    case("decay-with-sgd", f"{SET} weight_decay=0.1", "weight_decay (decoupled) is for adamw"),
    case(
        "adamw-with-l2", f"{SET} optimizer=adamw --set l2=0.1", "adamw takes decoupled weight_decay"
    ),
    case(
        "nesterov-no-momentum", f"{SET} optimizer=nesterov --set momentum=0", "needs momentum > 0"
    ),
    case("lr-nan", f"{SET} lr=nan", "lr must be a finite number; got nan"),
    case("lr-zero", f"{SET} lr=0", "lr must be > 0"),
    case("lr-minus-inf", f"{SET} lr=-inf", "lr must be > 0"),
    case(
        "lr-beyond-any-float", f"{SET} lr={'9' * 400}", "(400 characters) is too large for a number"
    ),
    case("seed-negative", f"{SET} seed=-1", "seed: must be >= 0; got -1"),
    case("seed-beyond-int64", f"{SET} seed=18446744073709551616", "seed: too large"),
    case("integer-of-5000-digits", f"{SET} seed={'7' * 5000}", "seed: expected an integer"),
    case("hidden-zero-width", f"{SET} hidden=[0]", "hidden: every width must be >= 1"),
    case("hidden-not-numbers", f"{SET} 'hidden=[4, \"a\"]'", "hidden: expected a list of int"),
    case("hidden-not-a-list", f"{SET} hidden=8", "hidden: expected a list of int; got 8"),
    case("hidden-a-table", f"{SET} hidden={{a=1}}", "expected a list of int; got {'a': 1}"),
    case("hidden-nested-lists", f"{SET} 'hidden=[[1], [2]]'", "hidden: expected a list of int"),
    case(
        "loss-output-mismatch", f"{SET} loss=bce", "loss 'bce' expects output activation 'sigmoid'"
    ),
    case("one-class", f"{SET} synthetic_classes=1", "synthetic_classes: must be >= 2"),
    case("one-feature", f"{SET} synthetic_features=1", "synthetic_features: must be >= 2"),
    case("zero-rows", f"{SET} synthetic_rows=0", "synthetic_rows: must be >= 1"),
    case("shuffle-not-boolean", f"{SET} shuffle=1", "shuffle: expected true or false"),
    case("drop-last-no-steps", f"{SET} drop_last=true --set batch_size=50", "leaves no steps"),
    case("set-without-equals", f"{SET} lr", "--set 'lr': expected key=value"),
    case("set-without-key", f"{SET} =1", "--set '=1': expected key=value"),
    case("set-newline", [*SET.split(), "lr=0.1\nepochs=1000"], "the control character '\\n'"),
    case("set-tab", [*SET.split(), "activation=\ttanh"], "the control character '\\t'"),
    case("set-escape", [*SET.split(), "activation=\x1b[31m"], "the control character '\\x1b'"),
    case("set-bad-utf8", [*SET.split(), "activation=\udcff"], "holds the control character"),
    case("set-too-long", f"{SET} activation={'x' * 50_000}", "a --set may hold at most 10000"),
    case("set-long-value-echo-cut", f"{SET} activation={'y' * 5000}", "(5002 characters)"),
    case("set-deep-nesting", f"{SET} hidden={'[' * 3000}{']' * 3000}", "hidden: expected a list"),
    case("engines-empty", f"{RUN} --engines ''", "--engines: no engine in ''"),
    case("engines-commas", f"{RUN} --engines ,,", "--engines: no engine in ',,'"),
    case("engines-twice", f"{RUN} --engines scratch,scratch", "must list distinct engines"),
    case("engines-unknown", f"{RUN} --engines scratch,tf", "engines: unknown value 'tf'"),
    case("engines-quote", f"{RUN} --engines 'scratch,\"x'", "engines: unknown value '\"x'"),
    case("memory-hidden", "train --set hidden=[100000,100000]", "hidden: this run needs about"),
    case(
        "memory-hidden-less", f"{SET} hidden=[20000,20000]", "4.0 GiB is available", little_memory
    ),
    case("memory-epochs", f"{SET} epochs=1000000000", "epochs: this run needs about"),
    case("memory-rows", f"{SET} synthetic_rows=1000000000000000", "synthetic_rows: this run needs"),
]
COMMAND_LINE = [
    case("no-command", [], "the following arguments are required: COMMAND"),
    case("unknown-command", "frobnicate", "invalid choice: 'frobnicate'"),
    case("unknown-option", f"{RUN} --bogus", "unrecognized arguments: --bogus"),
    case("dtype-choice", f"{RUN} --dtype float16", "argument --dtype: invalid choice"),
    case("steps-zero", f"{GRAD} --steps 0", "--steps: this run has 1 step"),
    case("steps-negative", f"{GRAD} --steps -1", "so --steps must be 1 to 1; got -1"),
    case("steps-beyond-the-run", f"{GRAD} --steps 5", "got 5"),
    case("steps-not-a-number", f"{GRAD} --steps abc", "argument --steps: invalid int value"),
    case("gradcheck-float32", f"{GRAD} --dtype float32", "gradcheck needs float64"),
    case("check-engines-unknown", "check --engines tf", "--engines: a comma-separated list of"),
    case("check-engines-empty", "check --engines ''", "--engines: a comma-separated list"),
    case("faults-engines-scratch", "faults --engines scratch", "--engines: a comma-separated"),
    case("bench-threads", "bench --threads 0", "--threads: must be >= 1"),
    case("bench-repeats", "bench --repeats 0", "--repeats: must be >= 1"),
    case("bench-sizes", "bench --sizes huge", "--sizes: 'huge' is neither a size"),
    case("bench-dtypes", "bench --dtypes float16", "--dtypes: choose from"),
    case("bench-oracle-steps", "bench --oracle-steps 7", "--oracle-steps: each must be a multiple"),
    case("train-hidden-zero", "train --set hidden=[0]", "hidden: every width must be >= 1"),
    case(
        "cosine-shorter-than-the-run",
        f"{RUN} --set epochs=3 --set lr_schedule=cosine --set lr_decay_steps=2",
        "lr_decay_steps: 2 is shorter than the run's 3 updates",
    ),
    case(
        "cosine-all-warm-up",
        f"{RUN} --set lr_schedule=cosine --set lr_warmup=5",
        "lr_warmup: the run has 1 update, so a warm-up of 5 leaves no cosine",
    ),
    case(
        "cosine-floor-above-lr",
        f"{RUN} --set lr_schedule=cosine --set lr_min=1",
        "optimizer: lr_min must be >= 0 and below lr (0.5); got 1",
    ),
]
CONF = f"{RUN} --config c.toml"
CONFIG = [
    case("config-missing", f"{RUN} --config nope.toml", "nope.toml: cannot read the config file"),
    case("config-name-escapes", [*RUN.split(), "--config", "\x1b[2J"], "\\x1b[2J: cannot read"),
    case("config-a-folder", f"{RUN} --config .", ".: a folder, not a config file"),
    case("config-dev-zero", f"{RUN} --config /dev/zero", "/dev/zero: not a regular file"),
    case("config-fifo", CONF, "c.toml: not a regular file", a_fifo),
    case("config-too-big", CONF, "larger than 1048576", a_big_config),
    case("config-utf16", CONF, "c.toml: UTF-16 text; save", config("lr = 0.1\n".encode("utf-16"))),
    case("config-binary", CONF, "a binary file (it holds NUL", config(b"\x7fELF\x02\x01\x00")),
    case("config-latin1", CONF, "c.toml, line 2: not UTF-8 text", config(b"lr = 1\na = '\xe9'")),
    case("config-bad-toml", CONF, "c.toml: not valid TOML", config("lr = = 1\n")),
    case("config-table", CONF, "line 1: run: tables are not used", config("[run]\nlr = 0.1\n")),
    case("config-unknown-key", CONF, "line 2: colour: unknown key", config("lr = 1\ncolour = 1")),
    case("config-wrong-type", CONF, "line 2: epochs: expected an", config("lr = 1\nepochs = 'a'")),
    case("config-bad-value", CONF, "line 1: batch_size: must be >= 1", config("batch_size = -1")),
    case(
        "config-nan", CONF, "line 3: optimizer: l2 must be a finite", config("#\nlr = 1\nl2 = nan")
    ),
    case("config-huge-integer", CONF, "a number too long", config("seed = " + "1" * 5000)),
    case("config-deep-nesting", CONF, "nested too deeply", config(f"a = {'[' * 5000}{']' * 5000}")),
]
DATA = [
    case("data-dir-missing", "train", "the data folder (from OCCUPANCY_DATA_DIR", data_dir("none")),
    case("data-dir-a-file", "train", "does not exist or is not a folder", data_dir("a-file")),
    case(
        "data-file-missing",
        "train",
        "datatest2.txt is missing",
        data_copy(lambda f: (f / "datatest2.txt").unlink()),
    ),
    case(
        "data-file-truncated",
        "train",
        "datatest.txt: sha256 mismatch",
        data_copy(lambda f: os.truncate(f / "datatest.txt", 1000)),
    ),
    case("data-byte-flipped", "train", "datatest2.txt: sha256 mismatch", data_copy(flip_a_byte)),
    case("data-file-huge", "train", "larger than 8388608 bytes", data_copy(make_huge)),
    case("data-file-a-folder", "train", "datatest.txt is missing", data_copy(replace_by_folder)),
    case("data-file-a-fifo", "train", "datatraining.txt is missing", data_copy(replace_by_fifo)),
    case("cache-a-file", "train", "the download cache cannot be used", cache_at("a-file")),
    case("cache-under-a-file", "train", "a part of its path is a file", cache_at("a-file/x")),
    case("no-network", "train", "downloading https://", cache_at("cache", offline=True)),
]
CATALOGUE = OUT + SPEC + COMMAND_LINE + CONFIG + DATA


def snapshot(root: Path) -> dict[str, tuple[int, object]]:
    """Every entry under ``root``: its type and, for a file, its bytes (a big one: its size
    and time of change)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = os.lstat(path)
            small = stat.S_ISREG(info.st_mode) and info.st_size < 1 << 24  # not the sparse 4 GiB
            content = path.read_bytes() if small else (info.st_size, info.st_mtime_ns)
            found[str(path.relative_to(root))] = (stat.S_IFMT(info.st_mode), content)
    return found


def test_the_catalogue_holds_at_least_60_cases():
    assert len(CATALOGUE) >= 60


@pytest.mark.parametrize(("argv", "expected", "setup"), CATALOGUE)
def test_bad_input_exits_2_with_one_line_and_touches_nothing(
    tmp_path, monkeypatch, capsys, argv, expected, setup
):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if setup is not None:
        setup(work, monkeypatch)
    before = snapshot(work)

    code = cli.main(argv)

    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err
    assert len(err) < 1200  # a bad value is echoed in a few hundred characters at most
    assert snapshot(work) == before


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into a folder whatever its permissions, so chmod cannot lock one",
)
@pytest.mark.parametrize("target", ["locked/out", "locked"], ids=["in", "is"])
def test_an_out_that_cannot_be_written_exits_2_before_the_run(tmp_path, capsys, target):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code = cli.main([*RUN.split(), "--out", str(tmp_path / target)])
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "permission" in err
