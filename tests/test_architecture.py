"""The house shows its architecture: every module of vaultd lives in one layer, none is over
400 lines, no class is over 300, and each opens with a docstring saying what it owns.

The layers themselves and the absence of import cycles are import-linter's contracts in
pyproject.toml, checked by `make lint` (`lint-imports`), which `make test` runs first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "daemon"
LAYERS = ("cli", "service", "agents", "reports", "lifecycle", "connectors", "core")
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "builtin" not in p.relative_to(PACKAGE).parts)


def test_every_module_lives_in_a_layer():
    stray = [
        p.relative_to(ROOT).as_posix()
        for p in modules()
        if p.parent == PACKAGE and p.name not in ("__init__.py", "__main__.py")
    ]
    assert stray == [], f"modules outside the layers {LAYERS}: {stray}"
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS)


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_size_and_docstring(path: Path):
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines (at most {MAX_MODULE_LINES})"
    tree = ast.parse(text)
    assert ast.get_docstring(tree), f"{path.name} does not open with a docstring"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"{path.name}: class {node.name} has {size} lines"
