"""Benchmarks use only the public names of ``registry`` and ``worker``: private ones move freely."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from benchmarks import run_all

PACKAGES = ("registry", "worker")


def _ours(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in PACKAGES


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_path(dotted: str) -> bool:
    return any(_private(part) for part in dotted.split("."))


def _imports(tree: ast.AST) -> tuple[set[str], list[str]]:
    """The local names bound by imports from our packages, and each private one they reach."""
    bound: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _ours(node.module):
            # A private module is one finding, whatever is imported from it.
            dotted = [node.module] if _private_path(node.module) else []
            dotted = dotted or [f"{node.module}.{a.name}" for a in node.names]
            bound |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            ours = [a for a in node.names if _ours(a.name)]
            dotted = [a.name for a in ours]
            bound |= {a.asname or a.name.split(".")[0] for a in ours}
        else:
            continue
        found += [f"{name} (line {node.lineno})" for name in dotted if _private_path(name)]
    return bound, found


def private_uses(source: str) -> list[str]:
    """Each private module, function or attribute of our packages that ``source`` reaches."""
    tree = ast.parse(source)
    bound, found = _imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base: ast.expr = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


@pytest.mark.parametrize(
    "path", sorted(run_all.HERE.glob("*.py")), ids=lambda p: p.name.removesuffix(".py")
)
def test_benchmark_uses_public_names_only(path: Path) -> None:
    found = private_uses(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} reaches private names: {', '.join(found)}"


def test_the_check_sees_each_kind_of_private_use() -> None:
    source = (
        "from registry.services import queue\n"
        "from registry.services.queue import _loaded\n"
        "from registry._internal import x\n"
        "import worker.training as t\n"
        "queue._current(1)\n"
        "t._helper.value\n"
        "self._fine = 1\n"
    )
    assert len(private_uses(source)) == 4
