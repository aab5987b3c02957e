"""A Bicep file as Python data, from tree-sitter's parse: so tests check wiring, not text.

Objects become dicts, arrays lists, plain strings str; any other expression (a reference such
as ``workerIdentity.id``, a call, an interpolated string) is kept as its source text in an Expr,
so that a test compares what a value refers to. ``[for x in xs: {...}]`` becomes a For.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path


class Expr(str):
    """Source text of an expression Bicep evaluates at deployment."""


@dataclass(frozen=True)
class For:
    variable: str
    iterable: str
    body: object


@dataclass
class Param:
    type: str
    default: object = None
    has_default: bool = False
    decorators: dict[str, str] = field(default_factory=dict)  # name -> argument source text


@dataclass
class Declared:
    """A resource or module: its type (or module path), condition and body."""

    kind: str
    body: dict
    condition: str | None = None


@dataclass
class BicepFile:
    params: dict[str, Param]
    variables: dict[str, object]
    resources: dict[str, Declared]
    modules: dict[str, Declared]
    outputs: dict[str, object]


def _parser():
    import tree_sitter
    import tree_sitter_bicep

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def _text(node) -> str:
    return node.text.decode()


def _string(node) -> object:
    parts = [c for c in node.children if c.type not in ("'", "'''")]
    if all(c.type == "string_content" for c in parts):
        return "".join(_text(c) for c in parts)
    return Expr(_text(node))


def value(node) -> object:
    """The Python form of one Bicep expression node."""
    if node.type == "object":
        result = {}
        for prop in (c for c in node.children if c.type == "object_property"):
            key_node, value_node = prop.children[0], prop.children[-1]
            key = _string(key_node) if key_node.type == "string" else _text(key_node)
            result[key] = value(value_node)
        return result
    if node.type == "array":
        return [value(c) for c in node.children if c.type not in ("[", "]", ",")]
    if node.type == "for_statement":
        named = [c for c in node.children if c.is_named]
        return For(_text(named[0]), _text(named[1]), value(named[-1]))
    if node.type == "string":
        return _string(node)
    if node.type == "boolean":
        return _text(node) == "true"
    if node.type == "number":
        return int(_text(node))
    return Expr(_text(node))


def _decorators(node) -> dict[str, str]:
    found = {}
    for decorator in node.children:
        match = re.fullmatch(r"@(\w+)\((.*)\)", _text(decorator), re.S)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@cache
def load(path: Path) -> BicepFile:
    tree = _parser().parse(path.read_bytes())
    model = BicepFile({}, {}, {}, {}, {})
    pending: dict[str, str] = {}
    for node in tree.root_node.children:
        named = {}  # the first child of each type: the declared name comes before any value
        for child in node.children:
            named.setdefault(child.type, child)
        if node.type == "comment":
            continue
        if node.type == "decorators":
            pending = _decorators(node)
            continue
        if node.type == "parameter_declaration":
            last = node.children[-1]
            has_default = any(c.type == "=" for c in node.children)
            model.params[_text(named["identifier"])] = Param(
                _text(named["type"]), value(last) if has_default else None, has_default, pending)
        elif node.type == "variable_declaration":
            model.variables[_text(named["identifier"])] = value(node.children[-1])
        elif node.type in ("resource_declaration", "module_declaration"):
            body = node.children[-1]
            condition = None
            if body.type == "if_statement":
                condition = _text(next(c for c in body.children if c.type == "parenthesized_expression"))
                body = next(c for c in body.children if c.type == "object")
            target = model.resources if node.type == "resource_declaration" else model.modules
            target[_text(named["identifier"])] = Declared(_string(named["string"]), value(body), condition)
        elif node.type == "output_declaration":
            model.outputs[_text(named["identifier"])] = value(node.children[-1])
        pending = {}
    return model


def has_syntax_errors(source: bytes) -> list[str]:
    """Where tree-sitter finds an error or a missing token, as 'line: text'."""
    errors = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"{node.start_point[0] + 1}: {node.text[:60]!r}")
        for child in node.children:
            walk(child)

    tree = _parser().parse(source)
    walk(tree.root_node)
    return errors if errors or not tree.root_node.has_error else ["has_error without an ERROR node"]
