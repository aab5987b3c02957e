"""The emulator's layers, read from its source: no import cycles, each module imports only layers below
its own, no part of the package is handed a function of another to call back, the kinds of work use the
engine's parts (never its store or dispatcher), and the gRPC service and the dashboard reach data only
through the engine."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dts_emulator"


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
    assert graph["dts_emulator.backend"], "the import reader found nothing: it is broken"
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


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package named like the real one, holding ``files`` (name -> source) and an empty __init__."""
    fake = tmp_path / "emulator"
    fake.mkdir()
    for name, source in {"__init__.py": "", **files}.items():
        (fake / name).write_text(source)
    return fake


def test_the_import_reader_sees_imports_in_functions_but_not_for_type_checking(tmp_path):
    fake = _fake_package(tmp_path, {
        "a.py": "from .b import x\n",
        "b.py": "def f():\n    from . import a\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import y\n",
    })
    modules = _modules(fake)
    assert _imports("emulator.a", fake / "a.py", modules) == {"emulator.b"}
    assert _imports("emulator.b", fake / "b.py", modules) == {"emulator.a"}
    assert _imports("emulator.c", fake / "c.py", modules) == set()


@pytest.mark.parametrize("module", ["dts_emulator.service", "dts_emulator.service_instances",
                                    "dts_emulator.service_workers", "dts_emulator.service_entities", "dts_emulator.rpc",
                                    "dts_emulator.dashboard.app", "dts_emulator.dashboard.views"])
def test_the_service_and_the_dashboard_never_touch_the_store(module):
    tree = ast.parse(MODULES[module].read_text())
    uses = [f"line {n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in ("store", "_store", "_db")]
    assert uses == []


# The package's modules from the bottom up (names relative to the package; "x.*" is a subpackage's
# modules). A module imports only modules of lower layers; a subpackage's modules also import each other.
# A new module must be placed here: where it sits is a design decision, made once.
LAYERS = [
    ["validation", "clock", "events", "store", "store.*"],
    ["errors", "names", "paging", "actions", "entity_log"],
    ["dispatch"],
    ["transactions", "backoff", "reading"],
    ["timekeeping", "waiters", "inbox"],
    ["post"],
    ["instances"],
    ["endings", "streams"],
    ["retries"],
    ["backend"],
    ["control", "activities", "force", "hubs", "health"],
    ["orchestrations", "entities", "retention"],
    ["workitems", "rpc"],
    ["service_instances", "service_workers", "service_entities", "workers"],
    ["service", "dashboard", "dashboard.*", "diagnose"],
    ["server"],
    ["testing", "cli"],
    ["pytest_plugin", "__main__", ""],
]

# Package functions handed over on purpose, and to what.
HANDED_OUTSIDE = {
    ("workitems", "resolve"),  # to asyncio's call_later, as a timeout
    # A view built on the reader's thread (Backend.offload runs it and returns it): no engine state.
    ("dashboard.app", "views.history"), ("dashboard.app", "ev.parse"),
}


def _relative(name: str, package: str) -> str:
    return name[len(package) + 1:] if name != package else ""


def _layer_of(relative: str, layers: list[list[str]]) -> tuple[int, str | None]:
    """(layer index, subpackage or None); -1 when the module is not placed."""
    for index, members in enumerate(layers):
        for member in members:
            if member == relative:
                return index, relative if f"{relative}.*" in members else None
            if member.endswith(".*") and relative.startswith(member[:-1]):
                return index, member[:-2]
    return -1, None


def _layering_problems(modules: dict[str, Path], package: str, layers: list[list[str]]) -> list[str]:
    problems = []
    for name, path in sorted(modules.items()):
        layer, group = _layer_of(_relative(name, package), layers)
        if layer < 0:
            problems.append(f"{name} is in no layer (add it to LAYERS)")
            continue
        for imported in sorted(_imports(name, path, modules)):
            other, other_group = _layer_of(_relative(imported, package), layers)
            if other < layer or (other == layer and group is not None and group == other_group):
                continue
            problems.append(f"{name} (layer {layer}) imports {imported} (layer {other})")
    return problems


def test_each_module_imports_only_lower_layers():
    assert _layering_problems(MODULES, PACKAGE.name, LAYERS) == []


def test_the_layer_check_sees_an_upward_import_and_an_unplaced_module(tmp_path):
    fake = _fake_package(tmp_path, {"low.py": "def f():\n    from . import high\n",
                                    "high.py": "from .low import f\n", "stray.py": ""})
    problems = _layering_problems(_modules(fake), "emulator", [["low"], ["high"], [""]])
    assert problems == ["emulator.low (layer 0) imports emulator.high (layer 1)",
                        "emulator.stray is in no layer (add it to LAYERS)"]


def _package_bindings(name: str, path: Path, tree: ast.AST, modules: dict[str, Path]) -> dict[str, tuple[str, str]]:
    """Names this module binds to the package's modules or their members: name -> (module, member or "")."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    root = next(iter(modules)).split(".")[0]
    bound: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        if base.split(".")[0] != root:
            continue
        for alias in node.names:
            full = f"{base}.{alias.name}"
            bound[alias.asname or alias.name] = (full, "") if full in modules else (base, alias.name)
    return bound


def _is_function_or_module(module: str, member: str, resolve_objects: bool) -> bool:
    if not member or not resolve_objects:
        return True
    found = getattr(importlib.import_module(module), member, None)
    return inspect.isfunction(found) or inspect.ismodule(found)


def _handed_functions(name: str, path: Path, modules: dict[str, Path] = MODULES,
                      resolve_objects: bool = True) -> list[str]:
    """The package's functions and modules this module passes to calls as arguments (to be called back).

    A function called in the argument (``f(g(x))``) is not handed over; one called inside a lambda is.
    """
    tree = ast.parse(path.read_text())
    bound = _package_bindings(name, path, tree, modules)
    for node in ast.walk(tree):  # a local variable or argument of the same name is not the import
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) or isinstance(node, ast.arg):
            bound.pop(node.id if isinstance(node, ast.Name) else node.arg, None)

    def reference(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name) and node.id in bound:
            module, member = bound[node.id]
            return ast.unparse(node) if _is_function_or_module(module, member, resolve_objects) else None
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            module, member = bound[node.value.id]
            if not member:  # an attribute of a package module: is it a function or module?
                return ast.unparse(node) if _is_function_or_module(module, node.attr, resolve_objects) else None
        return None

    carriers: dict[str, str] = {}  # variables holding such functions (``give_up = {kind: module.fail}``)

    def visit(node: ast.AST, deferred: bool, found: list[str]) -> None:
        if isinstance(node, ast.Lambda):
            visit(node.body, True, found)
            return
        if isinstance(node, ast.Call) and not deferred:
            for child in [*node.args, *(k.value for k in node.keywords)]:
                visit(child, deferred, found)
            if not isinstance(node.func, (ast.Name, ast.Attribute)) or reference(node.func) is None:
                visit(node.func, deferred, found)
            return
        if (ref := reference(node)) is not None:
            found.append(f"line {node.lineno}: {ref}")
            return
        if isinstance(node, ast.Name) and node.id in carriers and isinstance(node.ctx, ast.Load):
            found.append(f"line {node.lineno}: {node.id} ({carriers[node.id]})")
            return
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return  # a package module's constant or class (``ev.TERMINAL``), not the module itself
        for child in ast.iter_child_nodes(node):
            visit(child, deferred, found)

    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and not isinstance(node.value, (ast.Call, ast.Await))):  # a call's result is not its arguments
            held: list[str] = []
            visit(node.value, False, held)
            if held:
                carriers[node.targets[0].id] = ", ".join(h.split(": ", 1)[1] for h in held)
    found: list[str] = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call):
            for argument in [*call.args, *(k.value for k in call.keywords)]:
                visit(argument, False, found)
    return sorted(set(found))


def test_no_part_of_the_emulator_is_handed_a_function_of_another_to_call_back():
    """Control only runs down: e.g. no entity pump or per-kind failure plugged into the core from above."""
    handed = {}
    for name, path in MODULES.items():
        relative = _relative(name, PACKAGE.name)
        refs = [r for r in _handed_functions(name, path) if (relative, r.split(": ")[1]) not in HANDED_OUTSIDE]
        if refs:
            handed[name] = refs
    assert handed == {}


def test_the_callback_check_sees_functions_handed_over_but_not_calls(tmp_path):
    fake = _fake_package(tmp_path, {"entities.py": "def pump():\n    pass\n", "engine.py": (
        "from . import entities\nfrom .entities import pump\n"
        "Backend(rules=entities, give_up={'entity': entities.pump})\n"  # the injection this project removed
        "run(pump)\nrun(lambda: pump())\n"
        "run(entities.pump())\nrun(str(pump()))\n"  # calls: their results are passed, not the functions
        "table = {'entity': entities.pump}\nrun(table)\ntable['entity']()\n")})
    found = _handed_functions("emulator.engine", fake / "engine.py", _modules(fake), resolve_objects=False)
    assert found == ["line 3: entities", "line 3: entities.pump", "line 4: pump", "line 5: pump",
                     "line 9: table (entities.pump)"]


KINDS = ["orchestrations", "activities", "entities", "control", "workitems", "force", "hubs", "retention"]


@pytest.mark.parametrize("module", KINDS)
def test_the_kinds_of_work_use_the_engines_parts_not_its_store_or_dispatcher(module):
    tree = ast.parse(MODULES[f"{PACKAGE.name}.{module}"].read_text())
    uses = [f"line {n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in ("store", "dispatch", "_store", "_dispatch")]
    assert uses == []


def test_engine_time_is_passed_not_found_through_the_thread():
    """A thread-local clock gave code on another thread the wall clock, silently."""
    users = [name for name, path in MODULES.items() if "threading.local" in path.read_text()]
    assert users == []
    events = importlib.import_module(f"{PACKAGE.name}.events")
    assert not hasattr(events, "now")
