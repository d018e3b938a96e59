"""The README's Python examples name things that exist: every `from MODULE import NAME` and `import MODULE` in
its python code blocks resolves (the examples' data and models are not needed for that)."""

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
