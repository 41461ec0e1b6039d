"""The house's shape, checked: files that fit in your head, a small top level, tests that mirror.

import-linter checks the arrows (``make lint``); these check what it cannot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("registry", "worker")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40
MAX_TOP_LEVEL_MODULES = 12


def _sources() -> list[Path]:
    found = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return [p for p in found if "migrations/versions" not in p.as_posix()]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_and_functions_fit_in_your_head(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it by concept"
    long = [
        f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_registry_top_level_stays_small() -> None:
    modules = sorted(p.name for p in (ROOT / "registry").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_every_package_has_its_test_folder() -> None:
    packages = [p.name for p in (ROOT / "registry").iterdir() if (p / "__init__.py").is_file()]
    missing = [name for name in packages if not (ROOT / "tests" / name).is_dir()]
    assert not missing, f"tests/ should mirror registry/: no tests/{missing}"


def test_no_test_module_imports_another() -> None:
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests"):
                leaf = node.module.rsplit(".", 1)[-1]
                if leaf.startswith("test_") or leaf == "conftest":
                    offenders.append(f"{path.relative_to(ROOT)} imports {node.module}")
    assert not offenders, "share helpers through tests/support/: " + "; ".join(offenders)
