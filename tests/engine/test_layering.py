"""The emulator's layers, read from its source: no import cycles, and the gRPC service and the
dashboard reach data only through the engine (never its store)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "emulator"


def _modules(package: Path) -> dict[str, Path]:
    def name(path: Path) -> str:
        parts = path.relative_to(package.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    return {name(p): p for p in package.rglob("*.py")}


MODULES = _modules(PACKAGE)


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, modules: dict[str, Path] = MODULES) -> set[str]:
    """Sibling modules this module imports anywhere (in functions too), except for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking_block(node):
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def test_the_emulator_has_no_import_cycles():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert graph["emulator.backend"], "the import reader found nothing: it is broken"
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_the_import_reader_sees_imports_in_functions_but_not_for_type_checking(tmp_path):
    fake = tmp_path / "emulator"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "a.py").write_text("from .b import x\n")
    (fake / "b.py").write_text("def f():\n    from . import a\n")
    (fake / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n")
    modules = _modules(fake)
    assert _imports("emulator.a", fake / "a.py", modules) == {"emulator.b"}
    assert _imports("emulator.b", fake / "b.py", modules) == {"emulator.a"}
    assert _imports("emulator.c", fake / "c.py", modules) == set()


@pytest.mark.parametrize("module", ["emulator.service", "emulator.dashboard.app", "emulator.dashboard.views"])
def test_the_service_and_the_dashboard_never_touch_the_store(module):
    tree = ast.parse(MODULES[module].read_text())
    uses = [f"line {n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in ("store", "_store", "_db")]
    assert uses == []
