"""JSON in and out of the dashboard: it accepts only values it can store and show again.

Python's ``json`` reads ``NaN``, ``Infinity``, ``1e999`` (infinite), lone surrogates
(``"\\ud800"``) and any depth until the stack runs out; none of these can be sent back
as strict JSON text. Request bodies with them are refused with a message naming the
problem; stored payloads with them (written by workers) are shown as their raw text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.responses import JSONResponse as _StarletteJSON

from ..validation import MAX_NAME_LENGTH, unprintable

MAX_DEPTH = 64
"""How deeply a request body may nest; hand-typed inputs come nowhere near it."""
MAX_STORED_DEPTH = 200
"""Deeper stored payloads are shown as text: the response encoder recurses once per level."""


class BadJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"{text} is too large for a JSON number")
    return value


def parse_object(raw: bytes) -> dict:
    """A request body: empty, or a JSON object the dashboard can store and show again."""
    if not raw:
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except BadJson as exc:
        raise BadJson(f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise BadJson(f"the request body is not JSON the dashboard accepts: nested deeper than {MAX_DEPTH} levels") \
            from None
    except ValueError as exc:  # also invalid UTF-8
        raise BadJson(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadJson("the request body must be a JSON object")
    check_value(body)
    return body


def _walk(value: Any):
    """(item, depth) for every value, key and container in ``value``, without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        yield item, depth
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def check_value(value: Any) -> None:
    """Depth within MAX_DEPTH, and only text that UTF-8 can carry."""
    for item, depth in _walk(value):
        if depth > MAX_DEPTH:
            raise BadJson(f"the request body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, str) and not _is_text(item):
            raise BadJson("the request body has a string with a lone surrogate (e.g. \\ud800), which is not text")


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_problem(field: str, value: str) -> str | None:
    """Why ``value`` cannot be an operation or event name, or None."""
    if len(value) > MAX_NAME_LENGTH:
        return f"'{field}' is {len(value)} characters; the limit is {MAX_NAME_LENGTH}"
    if bad := unprintable(value):
        return f"'{field}' must not contain {bad}"
    return None


def parse_stored(text: str | None) -> Any:
    """A stored payload as a value, or as its text if it is not strict JSON."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        return text
    return text if any(depth > MAX_STORED_DEPTH for _, depth in _walk(value)) else value


class JSONResponse(_StarletteJSON):
    """Starlette's, with non-ASCII escaped, so a lone surrogate in stored data is sent as ``\\ud800``."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
