"""docs/mutation.md, written from a mutmut run and the file of classified survivors.

    python -m tests.mutation_page run --label after      # a fresh `mutmut run`, timed; then
                                                         # its figures into docs/mutation.json
                                                         # and the page rendered
    python -m tests.mutation_page collect --label before --seconds 812
                                                         # the same from a run already made
                                                         # (mutants/ as it is)
    python -m tests.mutation_page render                 # the page alone, from the two files

``docs/mutation.json`` holds each measured run (``before``: the tests as they were;
``after``: with the tests this work added): the commit it was measured at, the counts, the
runtime and every mutant that was not killed, with its diff. ``docs/mutation-survivors.toml``
classifies them by hand: equivalent (with the reason), a gap (with the test that now kills
it), or a message gap. A survivor is matched to its class by its function and the changed
line, before and after, not by mutmut's id, whose number changes whenever scratch changes.
``tests/test_docs.py`` checks that the page is this rendering and that every survivor of
the last run is classified equivalent.

Reads mutmut 3.8.1's files in ``mutants/`` (``*.meta``: each mutant's exit code) and its
diff of one mutant (``mutmut.mutation.diff_apply.get_diff_for_mutant``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "mutation.json"
CLASSIFIED = ROOT / "docs" / "mutation-survivors.toml"
PAGE = ROOT / "docs" / "mutation.md"
COMMAND = "python -m tests.mutation_page run --label after"
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# mutmut's exit codes (mutmut/stats.py): what each verdict is called here
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS.update({36: "timeout", 24: "timeout", -24: "timeout", 34: "skipped", None: "not checked"})
CLASSES = ("equivalent", "gap", "gap: message")
VERDICTS = ("killed", "survived", "no tests", "timeout", "not checked")
LABELS = {"before": "before (the tests as they were)", "after": "after (with the new tests)"}


# --- measuring ------------------------------------------------------------------------------


def run_mutmut() -> tuple[float, float]:
    """A fresh ``mutmut run`` from the clone's root (as ``tox -e mutants``): its wall-clock
    seconds, and the CPU seconds of mutmut and every worker it forked."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    env = {**os.environ, **THREADS, "PYTHONHASHSEED": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    mutmut = Path(sys.executable).with_name("mutmut")
    start, cpu = time.monotonic(), _children_cpu()
    subprocess.run([str(mutmut), "run"], cwd=ROOT, env=env, check=True)
    return time.monotonic() - start, _children_cpu() - cpu


def rerun_survivors(names: list[str]) -> tuple[float, float]:
    """mutmut's incremental run: the survivors of the run in mutants/ run again against the
    tests as they are now (the test files copied over mutmut's copies; mutmut collects the
    new tests' coverage itself). A mutant killed before stays killed: tests were only added."""
    for path in (ROOT / "tests").rglob("*.py"):
        target = ROOT / "mutants" / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    env = {**os.environ, **THREADS, "PYTHONHASHSEED": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    mutmut = Path(sys.executable).with_name("mutmut")
    start, cpu = time.monotonic(), _children_cpu()
    subprocess.run([str(mutmut), "run", *names], cwd=ROOT, env=env, check=True)
    return time.monotonic() - start, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verdicts() -> dict[str, tuple[str, str]]:
    """{mutant id: (scratch file, verdict)} from mutmut's ``mutants/**/*.meta``."""
    found = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        path = meta.relative_to(ROOT / "mutants").as_posix().removesuffix(".meta")
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        for mutant, code in codes.items():
            found[mutant] = (path, STATUS.get(code, "suspicious"))
    if not found:
        raise SystemExit("no mutmut results in mutants/: run `mutmut run` first")
    return found


def function_of(mutant: str) -> str:
    """``scratch.config.xǁMLPǁ__post_init____mutmut_3`` -> ``MLP.__post_init__``."""
    name = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    return name.removeprefix("xǁ").replace("ǁ", ".") if "ǁ" in name else name.removeprefix("x_")


def changed_lines(mutant: str, path: str) -> tuple[str, str]:
    """The mutated lines, before and after, each joined into one line of text."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        diff = get_diff_for_mutant(mutant, path=path).splitlines()
    finally:
        os.chdir(cwd)
    body = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
    old = " ".join(line[1:].strip() for line in body if line.startswith("-"))
    new = " ".join(line[1:].strip() for line in body if line.startswith("+"))
    return old, new


def line_of(path: str, function: str, text: str) -> int:
    """The line of ``path`` where ``function``'s ``text`` (its first line) is, 0 if none."""
    source = (ROOT / path).read_text(encoding="utf-8")
    first = text.split("  ")[0].strip()
    start = 1
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function.rpartition(".")[2]:
            start = node.lineno
    lines = source.splitlines()
    for number in range(start, len(lines) + 1):
        if first and lines[number - 1].strip().startswith(first[:60]):
            return number
    return 0


def measure(seconds: float, cpu_seconds: float | None, commit: str | None = None) -> dict:
    """The figures of the run in mutants/: counts and every mutant not killed."""
    found = verdicts()
    counts = Counter(status for _, status in found.values())
    survivors = []
    for mutant, (path, status) in sorted(found.items(), key=lambda kv: _natural(kv[0])):
        if status in ("killed", "not checked"):
            continue
        function = function_of(mutant)
        old, new = changed_lines(mutant, path)
        survivors.append(
            {
                "id": mutant,
                "status": status,
                "file": path,
                "line": line_of(path, function, old),
                "function": function,
                "from": old,
                "to": new,
            }
        )
    given = commit
    commit = subprocess.run(
        ["git", "rev-parse", "--short=7", given or "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "scratch", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    from importlib.metadata import version

    return {
        "commit": commit + (" (with uncommitted changes)" if dirty and not given else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mutmut": version("mutmut"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 1),
        "seconds": round(seconds),
        "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds),
        "counts": {s: counts.get(s, 0) for s in VERDICTS} | {"total": sum(counts.values())},
        "survivors": survivors,
    }


def _natural(mutant: str) -> tuple[str, int]:
    head, _, number = mutant.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


# --- classifying and rendering ----------------------------------------------------------------


def load_classified(path: Path = CLASSIFIED) -> list[dict]:
    """The hand classification: each entry names a function and the changed line (``from``,
    ``to``) or, for a whole function's mutants of one verdict, ``status`` alone."""
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("survivor", [])
    for entry in entries:
        if entry.get("class") not in CLASSES:
            raise ValueError(f"{path.name}: {entry}: class must be one of {CLASSES}")
        if entry["class"] == "equivalent" and not entry.get("reason"):
            raise ValueError(f"{path.name}: {entry}: an equivalent mutant needs its reason")
        if entry["class"] != "equivalent" and not entry.get("test"):
            raise ValueError(f"{path.name}: {entry}: a gap needs the test that closes it")
    return entries


def classify(survivor: dict, entries: list[dict]) -> dict | None:
    """The entry for one survivor: the one for its exact change, else its function's."""
    same = [e for e in entries if e["function"] == survivor["function"]]
    for entry in same:
        to = entry.get("to")
        if entry.get("from") == survivor["from"] and survivor["to"] in (
            to if isinstance(to, list) else [to]
        ):
            return entry
    for entry in same:
        if "from" not in entry and entry.get("status") == survivor["status"]:
            return entry
    return None


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "—"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def render(figures: dict, entries: list[dict]) -> str:
    runs = figures["runs"]
    out = [
        "# Mutation testing of `scratch/`",
        "",
        "<!-- Generated by `python -m tests.mutation_page` from docs/mutation.json (the runs) "
        "and docs/mutation-survivors.toml (the classification): do not edit by hand. -->",
        "",
    ]
    out += INTRO
    out += ["## Score", ""]
    out += [
        "| run | commit | killed | survived | no tests | timeouts | total | equivalent "
        "| score | score, equivalents left out | runtime | CPU time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, run in runs.items():
        c = run["counts"]
        classes = [classify(s, entries) for s in run["survivors"]]
        equivalent = sum(1 for e in classes if e and e["class"] == "equivalent")
        checked = c["total"] - c.get("not checked", 0)
        total = f"{checked} of {c['total']}" if checked < c["total"] else str(c["total"])
        cpu = f"{run['cpu_seconds']} s" if run.get("cpu_seconds") is not None else "—"
        out.append(
            f"| {LABELS.get(label, label)} | `{run['commit']}` | {c['killed']} | {c['survived']} "
            f"| {c['no tests']} | {c['timeout']} | {total} | {equivalent} "
            f"| {percent(c['killed'], checked)} | {percent(c['killed'], checked - equivalent)} "
            f"| {run['seconds']} s | {cpu} |"
        )
    out += [""]
    for label, run in runs.items():
        c = run["counts"]
        stopped = ""
        if c.get("not checked"):
            stopped = (
                f" Stopped after {c['total'] - c['not checked']} of its {c['total']} mutants "
                "(the rest not checked), to leave time for the final run."
            )
        for again in run.get("rerun", []):
            stopped += (
                f" The survivors not classified equivalent ({again['mutants']}) were then run "
                f"again against the tests at `{again['tests_at']}` (mutmut's incremental run, "
                f"{again['seconds']} s): the figures are after that."
            )
        out.append(
            f"- {label}: measured {run['date']} with mutmut {run['mutmut']}, Python "
            f"{run['python']}, {run['cpu_count']} cores (load average {run['load_average']} "
            f"at the end).{stopped}"
        )
    out += ["", *RUNTIME, ""]
    for label, run in runs.items():
        out += survivor_table(label, run, entries)
    out += HOW
    return "\n".join(out) + "\n"


def survivor_table(label: str, run: dict, entries: list[dict]) -> list[str]:
    survivors = run["survivors"]
    out = [f"## The mutants not killed: {label} (`{run['commit']}`)", ""]
    if not survivors:
        return [*out, "None.", ""]
    tally = Counter((classify(s, entries) or {"class": "unclassified"})["class"] for s in survivors)
    out.append(
        f"{len(survivors)} mutants: "
        + ", ".join(f"**{n}** {name}" for name, n in sorted(tally.items()))
        + "."
    )
    out += [
        "",
        "| mutant | location | verdict | mutation | class | reason | killed by |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in survivors:
        entry = classify(s, entries) or {"class": "**unclassified**", "reason": ""}
        mutation = f"`{cell(s['from'])}` → `{cell(s['to'])}`" if s["to"] else "(removed)"
        test = entry.get("test", "")
        out.append(
            f"| `{s['id'].rpartition('.')[2]}` | `{s['file']}:{s['line']}` {s['function']} "
            f"| {s['status']} | {mutation} | {entry['class']} | {cell(entry.get('reason', ''))} "
            f"| {f'`{test}`' if test else '—'} |"
        )
    return [*out, ""]


INTRO = [
    "`tox -e mutants` runs [mutmut](https://github.com/boxed/mutmut) over `scratch/`: it makes",
    "every small change mutmut knows (an operator, a constant, a comparison, an argument, a",
    "string) in every function, one at a time, and runs the fast oracle tests against each. A",
    "mutant the tests fail on is *killed*; one they pass is a *survivor*; one no selected test",
    "reaches has *no tests*. Every mutant not killed is classified below: *equivalent* (it",
    "cannot change behaviour, with the reason), a *gap* (a behaviour no test pinned) or a *gap:",
    "message* (only an error message changed, or no test reached the error); each gap names",
    "the test in `tests/scratch/` that now kills it, in the test file of the module it tests.",
    "",
    "This is the general-purpose complement of the hand-written fault catalogue",
    "(`python -m comparisons faults`, listed in [faults.md](faults.md)): the catalogue holds",
    "realistic backprop bugs and checks that the oracle localizes them; mutmut makes thousands",
    "of blind mutations and checks that some test notices each.",
    "",
    "Mutant ids and the numbers in them belong to the scratch source of their run: they change",
    "when scratch changes, so the classification matches a mutant by its function and the",
    "changed line.",
    "",
]
RUNTIME = [
    "Score: killed over the mutants checked; with equivalents left out, killed over the checked",
    "mutants that can change behaviour. Runtime: wall-clock seconds of `mutmut run` from an",
    "empty `mutants/` on the development machine (2 cores shared with other jobs: the load",
    "average says how busy), 2 workers; CPU time: mutmut's and every worker's, so on 2 idle",
    "cores the run takes about half of it. Most of it is the survivors: each runs every test",
    "that reaches its function, while a killed mutant stops at its first failing test (mutmut",
    "runs each mutant's fastest tests first).",
]
HOW = [
    "## How to run it",
    "",
    "```sh",
    "tox -e mutants                                 # the counts and the survivors",
    f"{COMMAND}   # the same, then this page",
    "```",
    "",
    "or by hand, in an environment with the `tests` and `torch` extras and `mutmut==3.8.1`:",
    "",
    "```sh",
    "rm -rf mutants",
    "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 mutmut run",
    "mutmut export-cicd-stats    # the counts, in mutants/mutmut-cicd-stats.json",
    "mutmut results              # the survivors (and any timeouts)",
    "mutmut show <mutant id>     # one mutant's diff",
    "python -m tests.mutation_page collect --label after --seconds <its runtime>",
    "```",
    "",
    "A new survivor shows as **unclassified** on the page, and `tests/test_docs.py` fails until",
    "it is killed by a new test or entered in `docs/mutation-survivors.toml` as equivalent,",
    "with its reason.",
    "",
    "Configuration: `[tool.mutmut]` in `pyproject.toml`.",
    "",
    "- **Tests.** `tests/scratch` plus the quick lockstep tests against PyTorch",
    '  (`tests/comparisons/oracle/test_lockstep.py -m "not slow and not jax"`): about 650',
    "  tests, 20 s on 2 cores, and every function of scratch is reached by one of them (a",
    "  mutant with *no tests* would show in the table). JAX's lockstep tests check the same",
    "  traces against a second reference, add compile time, and JAX warns that it is not safe",
    "  to fork; the slow",
    "  product is left out for time. `tests/scratch/test_imports.py` is left out: it reads",
    "  scratch's import statements, and mutmut's copy of every file imports mutmut's",
    "  trampoline, so it fails on the clean copy too.",
    "- **What is copied.** mutmut copies `scratch/`, `tests/` and `pyproject.toml` into",
    "  `mutants/` and puts `mutants/` first on `sys.path`; `also_copy` adds `comparisons/`,",
    "  `data/` and `reference/`, which the lockstep tests import.",
    "- **pytest's settings.** The project's `addopts`, `--strict-markers`, `--strict-config` and",
    "  warnings-as-errors apply unchanged inside mutmut's runs. A mutant that makes NumPy warn",
    "  (overflow, 0/0) fails the tests and counts as killed, which is right: a new warning is a",
    "  change in behaviour.",
    "- **Process isolation.** mutmut's default `fork` mode: the workers are forked from the",
    "  process that ran the tests once to map tests to functions. PyTorch's intra-op thread pool",
    "  does not survive a fork: without `OMP_NUM_THREADS=1` the mutants that reach a lockstep",
    "  test hang and end as timeouts. With one thread (set by the tox env) there is no pool.",
    "  `forkserver` mode is fork-safe without that, but measured 6× slower here.",
    "- **What a forked worker cannot see.** The workers inherit every module already imported,",
    "  so a function that runs only at import time (`trace_schema._state`, which builds the",
    "  optimizer-state table) is reached by the tests only when a test calls it again itself.",
    "  mutmut 3 mutates code inside functions and methods only, and not decorated functions",
    "  (`functools.lru_cache`'d ones such as `trace_schema.parse`); module-level constants",
    "  (`LEAKY_RELU_SLOPE`, the equation tables) are not mutated.",
    "",
]


# --- the command ---------------------------------------------------------------------------


def write(figures: dict) -> None:
    FIGURES.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    PAGE.write_text(render(figures, load_classified()), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation_page", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "collect"):
        one = sub.add_parser(name)
        one.add_argument("--label", choices=list(LABELS), default="after")
        if name == "collect":
            one.add_argument("--seconds", type=float, required=True, help="the run's runtime")
            one.add_argument("--cpu-seconds", type=float, help="its CPU time, every worker's")
            one.add_argument("--commit", help="the commit it ran at (default: HEAD)")
    again = sub.add_parser(
        "rerun", help="the last run's survivors not classified equivalent, again"
    )
    again.add_argument("--commit", help="the commit the run was made at (default: as recorded)")
    sub.add_parser("render")
    args = parser.parse_args(argv)
    figures = json.loads(FIGURES.read_text(encoding="utf-8")) if FIGURES.exists() else {}
    figures.setdefault("runs", {})
    if args.command == "rerun":
        after = figures["runs"]["after"]
        entries = load_classified()
        names = [
            s["id"]
            for s in after["survivors"]
            if (classify(s, entries) or {}).get("class") != "equivalent"
        ]
        if not names:
            raise SystemExit("every survivor of the last run is classified equivalent")
        seconds, cpu = rerun_survivors(names)
        head = subprocess.run(
            ["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        commit = args.commit or after["commit"].split()[0]
        again = measure(after["seconds"], after["cpu_seconds"], commit)
        again["date"] = after["date"]
        again["load_average"] = after["load_average"]
        done = {"tests_at": head, "mutants": len(names), "seconds": round(seconds)}
        again["rerun"] = [*after.get("rerun", []), done]
        figures["runs"]["after"] = again
    elif args.command != "render":
        if args.command == "run":
            args.commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
            seconds, cpu = run_mutmut()
        else:
            seconds, cpu = args.seconds, args.cpu_seconds
        figures["runs"][args.label] = measure(seconds, cpu, getattr(args, "commit", None))
        figures["runs"] = {k: figures["runs"][k] for k in LABELS if k in figures["runs"]}
    write(figures)
    unclassified = [
        s["id"]
        for s in figures["runs"].get("after", {}).get("survivors", [])
        if classify(s, load_classified()) is None
    ]
    print(f"wrote {PAGE.relative_to(ROOT)}; unclassified survivors: {len(unclassified)}")
    for mutant in unclassified:
        print(f"  {mutant}")
    return 1 if unclassified else 0


if __name__ == "__main__":
    sys.exit(main())
