"""The README and the docs around it. The README's Python examples name things that exist: every `from MODULE
import NAME` and `import MODULE` in its python code blocks resolves (the examples' data and models are not needed for
that). Its reference documents every flag of every command, in that command's section. Every relative link of the
README, BENCHMARKS.md and docs/ resolves (files and heading anchors); BENCHMARKS.md links every history file and
shows every picture, and the recorded results under docs/benchmarks/ draw their pictures."""

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def imports() -> list[tuple[str, str | None]]:
    found = []
    for block in python_blocks():
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom):
                found += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(alias.name, None) for alias in node.names]
    return found


def test_the_readme_has_python_examples():
    assert python_blocks() and imports()


@pytest.mark.parametrize("module,name", imports())
def test_a_readme_import_resolves(module, name):
    mod = importlib.import_module(module)
    if name is not None:
        assert hasattr(mod, name) or importlib.util.find_spec(f"{module}.{name}") is not None, \
            f"README: `from {module} import {name}`: {module} has no {name}"


# -- the reference documents every command and flag; the docs' links resolve ------------------------------------
ROOT = README.parent
DOCS = [README, ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").rglob("*.md"))]


def cli_flags() -> list[tuple[str, str]]:
    """(verb, --flag) for every long option of every `vecbridge` subcommand, from the parser itself."""
    import argparse

    from vecbridge.cli import build_parser

    found = []

    def walk(parser, verb):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, verb or name)
            elif verb:
                found.extend((verb, o) for o in action.option_strings if o.startswith("--") and o != "--help")

    walk(build_parser(), None)
    return found


def reference_section(verb: str) -> str:
    """The README's reference section of `vecbridge VERB`: from its `### ` heading to the next one."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^### [^\n]*`vecbridge {verb}`[^\n]*\n(.*?)(?=^### |\Z)", text, flags=re.S | re.M)
    assert match, f"README: no `### ... vecbridge {verb}` section in the reference"
    return match.group(1)


def test_the_reference_documents_every_flag_of_every_command():
    missing = [f"vecbridge {verb} {flag}" for verb, flag in cli_flags()
               if not re.search(re.escape(flag) + r"(?![\w-])", reference_section(verb))]
    assert not missing, f"README reference: undocumented flags {missing}"
    assert "vecbridge --version" in README.read_text(encoding="utf-8")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.*)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_docs_links_resolve(doc):
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        where = (doc.parent / path).resolve() if path else doc
        if not where.exists():
            broken.append(target)
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_benchmarks_links_every_history_file_and_shows_every_picture():
    benchmarks = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    history = sorted((ROOT / "docs" / "history").glob("[0-9]*.md"))
    assert history
    unlinked = [p.name for p in history if f"(docs/history/{p.name})" not in benchmarks]
    assert not unlinked, f"BENCHMARKS.md History: not linked {unlinked}"
    pictures = sorted((ROOT / "docs" / "benchmarks").glob("*.png"))
    unshown = [p.name for p in pictures if f"docs/benchmarks/{p.name})" not in benchmarks]
    assert not unshown, f"BENCHMARKS.md: pictures not shown {unshown}"


def test_the_recorded_results_draw_their_pictures(tmp_path):
    """scripts/figures.py draws each picture of BENCHMARKS.md from the recorded results beside it."""
    import importlib.util as util

    spec = util.spec_from_file_location("figures", ROOT / "scripts" / "figures.py")
    figures = util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    made = {"translate": "translate.json", "migrate": "migrate.json", "defences": "audit-defences.json"}
    for figure, results in made.items():
        out = tmp_path / f"{figure}.png"
        assert figures.main([figure, str(ROOT / "docs" / "benchmarks" / results), str(out)]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
