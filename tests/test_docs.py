"""The documents: generated pages are current, and no document points at a path that is not
in the clone (a link, a file named in backticks, an anchor, a tox env)."""

from __future__ import annotations

import configparser
import itertools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\n]+)`")
TOX_ENV = re.compile(r"\btox -e ([\w,.-]+)")


def ignored_folders() -> set[str]:
    """The folders .gitignore names (outputs such as reports/ and mutants/): not the clone's."""
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {line.strip().strip("/") for line in lines if line.strip().endswith("/")}


def documents() -> list[Path]:
    """Every Markdown file of the clone, outside hidden and ignored folders."""
    skip = ignored_folders()
    return sorted(
        p
        for p in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)
    )


def anchors(text: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    out = set()
    for heading in re.findall(r"^#+ +(.+?) *$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        out.add(slug)
    return out


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def test_the_documents_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in documents()}
    assert {"README.md", "docs/faults.md", "docs/benchmarks.md"} <= names


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_stays_in_the_clone_and_finds_its_target(doc):
    text = doc.read_text(encoding="utf-8")
    problems = []
    for target in LINK.findall(without_code_blocks(text)):
        if re.match(r"[a-z]+:", target):  # a web address: a citation, a tool's site
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.is_relative_to(ROOT):
            problems.append(f"{target}: leaves the clone")
        elif not file.exists():
            problems.append(f"{target}: no such file in the clone")
        elif anchor and file.suffix == ".md":
            if anchor not in anchors(file.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading with that anchor")
    assert not problems, f"{doc.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_named_in_backticks_exists(doc):
    """`scratch/network.py:hidden_error`, `configs/occupancy.toml`, `.ci/run`: a path that
    starts in one of the clone's own top-level folders must be there."""
    skip = ignored_folders()
    tops = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in skip | {".git"}}
    problems = []
    for span in CODE.findall(doc.read_text(encoding="utf-8")):
        for word in span.split():
            if word.startswith("../"):
                problems.append(f"{word}: leaves the clone")
                continue
            path = re.split(r"[:#]", word.strip(".,;()"))[0].rstrip("/")
            if "/" not in path or path.split("/")[0] not in tops:
                continue
            if re.search(r"[*<>{}…]|\.\.\.", path):  # a pattern, not a path
                continue
            if not (ROOT / path).exists():
                problems.append(f"{word}: no such path in the clone")
    assert not problems, f"{doc.relative_to(ROOT)}: " + "; ".join(problems)


def tox_envs() -> set[str]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini", encoding="utf-8")
    envs = {"py"}
    for section in config.sections():
        name = section.removeprefix("testenv:")
        parts = re.split(r"\{([^}]*)\}", name)  # py3{12,13} -> py312, py313
        choices = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
        envs.update("".join(c) for c in itertools.product(*choices))
    return envs


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_tox_env_a_document_names_exists(doc):
    envs = tox_envs()
    named = {e for m in TOX_ENV.findall(doc.read_text(encoding="utf-8")) for e in m.split(",")}
    assert named <= envs, f"{doc.relative_to(ROOT)}: no such tox env: {sorted(named - envs)}"


def test_the_fault_catalogue_page_is_current():
    from comparisons.faults.page import COMMAND, render

    page = (ROOT / "docs" / "faults.md").read_text(encoding="utf-8")
    assert page == render(), f"docs/faults.md is stale: regenerate it with `{COMMAND}`"


def test_the_benchmarks_page_is_its_figures_rendering():
    from comparisons.bench.page import render_page

    data = json.loads((ROOT / "docs" / "benchmarks.json").read_text(encoding="utf-8"))
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert page == render_page(data), (
        f"docs/benchmarks.md is not the rendering of docs/benchmarks.json: regenerate both with "
        f"`{data['command']}`"
    )
    assert f"`{data['command']}`" in page and data["bench"]["machine"]["cpu"] in page


def test_the_readme_is_a_first_page_not_a_manual():
    """The README is for a newcomer: at most 300 lines; the rest lives in docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: move detail into docs/"
