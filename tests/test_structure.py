"""The house rules a reader relies on, checked on the source: no private name imported from another module, no
library function longer than 80 lines, and the rooms' imports pointing one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("align", "attacks", "encoders", "vecbridge")
MAX_FUNCTION_LINES = 80
# room -> the rooms it may not import (data flows text -> encoders -> vectors -> align -> attacks)
FORBIDDEN = {"encoders": ("align", "attacks", "vecbridge"), "align": ("encoders", "attacks", "vecbridge"),
             "attacks": ("encoders", "vecbridge")}


def sources(*rooms: str) -> list[Path]:
    return sorted(p for room in rooms for p in (ROOT / room).rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("room", [*LIBRARY, "scripts", "tests"])
def test_no_private_name_is_imported_from_another_module(room):
    found = [f"{p.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {node.module}"
             for p in sources(room) for node in ast.walk(parsed(p))
             if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
             for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("room", LIBRARY)
def test_no_library_function_is_longer_than_80_lines(room):
    found = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name} has {node.end_lineno - node.lineno + 1} lines"
             for p in sources(room) for node in ast.walk(parsed(p))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_one_way(room):
    found = []
    for p in sources(room):
        for node in ast.walk(parsed(p)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            found += [f"{p.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[0] in FORBIDDEN[room]]
    assert not found, "\n".join(found)
