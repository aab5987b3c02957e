"""The instance list: its filters (status, text, tag, created from/to), its sort, its pages, and
the histogram of starts and completions of what the filters match.

One reading of the query string serves the list, its histogram and the bulk actions'
"all matching the filter", so that the three always mean the same instances.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.routing import Route

from ..paging import split_page
from ..validation import MAX_NAME_LENGTH
from . import views
from .params import MAX_PAGE, BadParameter, _after, _backend, _hub, _int, _moment
from .payload import JSONResponse

SORTS = ("created", "updated")
FILTERS = ("status", "q", "tag", "from", "to")
BUCKETS = 40  # bars in the histogram


def _tag(text: str) -> tuple[str, str | None]:
    """``key`` (any value) or ``key=value``."""
    if len(text) > 2 * MAX_NAME_LENGTH:
        raise BadParameter(f"'tag' is {len(text)} characters; the limit is {2 * MAX_NAME_LENGTH}")
    key, sep, value = text.partition("=")
    if not key:
        raise BadParameter("'tag' is key or key=value, with a key")
    return key, value if sep else None


def filters(params: Mapping[str, str]) -> dict:
    """query_instances' filters from a list's parameters: status, q, tag, from, to."""
    status = params.get("status") or None
    if status is not None and status not in views.STATUS_VALUES:
        raise BadParameter(f"unknown status '{status}'; use one of {', '.join(views.STATUS_VALUES)}")
    found = dict(statuses=[views.STATUS_VALUES[status]] if status else (), search=params.get("q") or None)
    if params.get("tag"):
        found["tag"] = _tag(params["tag"])
    if params.get("from"):
        found["created_from"] = _moment("from", params["from"])
    if params.get("to"):
        found["created_to"] = _moment("to", params["to"])
    if found.get("created_from") is not None and found.get("created_to") is not None \
            and found["created_to"] <= found["created_from"]:
        raise BadParameter("'to' must be later than 'from'")
    return found


def _sort(params: Mapping[str, str]) -> bool:
    """True when the list is sorted by last update (newest first), False for created time."""
    sort = params.get("sort") or "created"
    if sort not in SORTS:
        raise BadParameter(f"unknown sort '{sort}'; use {' or '.join(SORTS)}")
    return sort == "updated"


def _token(row, by_updated: bool) -> str:
    """Where the next page starts (app._after reads it): after this row in the list's order."""
    return f"{row.updated_at if by_updated else row.created_at!r}|{row.instance_id}"


async def instances(request: Request):
    hub, params = _hub(request), request.query_params
    size = _int(request, "page_size", 50, 1, MAX_PAGE)
    by_updated = _sort(params)
    query = dict(filters(params), after=_after(params.get("after")), limit=size + 1, newest_first=True,
                 by_updated=by_updated)
    rows = await _backend(request).read(lambda reads: reads.query_instances(hub, **query))
    rows, more = split_page(rows, size)
    return JSONResponse({
        "items": [views.instance_summary(r) for r in rows],
        "next": _token(rows[-1], by_updated) if more else None,
    })


async def histogram(request: Request):
    """Starts and completions of the filtered instances in BUCKETS equal spans of time."""
    hub = _hub(request)
    query = filters(request.query_params)
    found = await _backend(request).read(lambda reads: reads.instance_histogram(hub, BUCKETS, **query))
    return JSONResponse({**found, "from": views.iso(found["from"]), "to": views.iso(found["to"])})


ROUTES = [
    Route("/api/hubs/{hub}/instances", instances),
    Route("/api/hubs/{hub}/instances/histogram", histogram),
]
