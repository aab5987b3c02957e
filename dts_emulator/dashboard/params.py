"""What every dashboard route reads from its request: the hub, the ID, numbers, page tokens, the body.

Each reader raises BadParameter (answered as 400 with the message) or a 404 for an unknown hub;
the route modules (app.py, operations.py, listing.py) share them from here.
"""

from __future__ import annotations

from datetime import datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request

from ..backend import Backend
from ..paging import parse_instance_token
from ..validation import check_time
from . import payload

MAX_PAGE = 200


class BadParameter(Exception):
    pass


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"'{name}' must be a whole number, not '{raw}'") from None
    if not low <= value <= high:
        raise BadParameter(f"'{name}' must be between {low} and {high}")
    return value


def _moment(field: str, text: str) -> float:
    """An ISO 8601 date and time with a zone, as seconds since the epoch."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(f"'{field}' must be a date and time (ISO 8601), not '{text}'") from None
    if moment.tzinfo is None:
        raise BadParameter(f"'{field}' needs a time zone (e.g. 2030-01-01T09:00:00Z)")
    seconds = moment.timestamp()
    if problem := check_time(f"'{field}'", seconds):
        raise BadParameter(f"{problem}, not '{text}'")
    return seconds


def _after(token: str | None) -> tuple[float, str] | None:
    if not token:
        return None
    try:
        return parse_instance_token(token)
    except ValueError:
        raise BadParameter("'after' is not a page token from this dashboard") from None


async def _body(request: Request) -> dict:
    try:
        return payload.parse_object(await request.body())
    except payload.BadJson as exc:
        raise BadParameter(str(exc)) from None


def _name(body: dict, field: str, missing: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise BadParameter(missing)
    problem = payload.name_problem(field, value)
    if problem:
        raise BadParameter(problem)
    return value


def _id(request: Request) -> str:
    value = request.query_params.get("id")
    if not value:
        raise BadParameter("the ID is missing: give it as ?id=")
    return value


def _backend(request: Request) -> Backend:
    return request.app.state.backend


def _hub(request: Request) -> str:
    hub = request.path_params["hub"]
    known = _backend(request).hubs
    if hub not in known:
        raise HTTPException(404, f"task hub '{hub}' does not exist; known: {', '.join(known)}")
    return hub


