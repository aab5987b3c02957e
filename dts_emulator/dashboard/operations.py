"""The dashboard's operator actions: start an orchestration, bulk actions, and the workers view.

Every change goes through the same engine functions as the gRPC service (``control``,
``Backend.create_instance``), behind the same guard (and refused in read-only mode).
Bulk actions act on the IDs given, or on what the list's filter matches, at most
``BULK_LIMIT`` instances per request; ``dryRun`` counts first, so that the page can ask.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.routing import Route

from .. import control
from .. import events as ev
from ..validation import check_instance_id, check_name
from . import listing, views
from .params import BadParameter, _backend, _body, _hub, _moment
from .payload import JSONResponse

BULK_LIMIT = 1000
BULK_ACTIONS = ("terminate", "purge", "suspend", "resume")


def _optional_text(body: dict, field: str) -> str | None:
    value = body.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadParameter(f"'{field}' must be a string")
    return value


def _scheduled(body: dict) -> float | None:
    text = _optional_text(body, "scheduledStart")
    if text is None:
        return None
    return _moment("scheduledStart", text)


def _tags(body: dict) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise BadParameter("'tags' must be an object of strings, e.g. {\"team\": \"billing\"}")
    return tags


async def start(request: Request):
    """Start an orchestration with every field the client API takes."""
    hub, backend = _hub(request), _backend(request)
    body = await _body(request)
    name = _optional_text(body, "name")
    if name is None:
        raise BadParameter("'name' (the orchestration name) is required")
    if problem := check_name("orchestration name", name):
        raise BadParameter(problem)
    instance_id = _optional_text(body, "instanceId") or ev.new_id()
    if problem := check_instance_id(instance_id):
        raise BadParameter(problem)
    existing = backend.instance(hub, instance_id)
    if existing is not None and existing.status not in ev.TERMINAL:
        raise control.InvalidState(f"instance '{instance_id}' already exists and is "
                                   f"{views.STATUS_NAMES[existing.status]}")
    backend.create_instance(hub, instance_id, name, version=_optional_text(body, "version"),
                            input=json.dumps(body["input"]) if "input" in body else None,
                            tags=_tags(body), scheduled_start=_scheduled(body))
    return JSONResponse({"instanceId": instance_id})


async def _targets(request: Request, hub: str, body: dict) -> list[str]:
    ids = body.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadParameter("'ids' must be a list of instance IDs")
        if len(ids) > BULK_LIMIT:
            raise BadParameter(f"at most {BULK_LIMIT} instances per request; select fewer")
        return list(dict.fromkeys(ids))  # an ID given twice is acted on, and counted, once
    f = body.get("filter")
    if not isinstance(f, dict):
        raise BadParameter("give 'ids' (the selected instances) or 'filter' (what the list shows)")
    if unknown := sorted(set(f) - set(listing.FILTERS)):
        # A misspelt filter must not widen the action to every instance of the hub.
        raise BadParameter(f"unknown filter {', '.join(map(repr, unknown))}; use {', '.join(listing.FILTERS)}")
    if not all(isinstance(v, str) for v in f.values()):
        raise BadParameter("the filter's values must be strings, as in the list's URL")
    query = dict(listing.filters(f), limit=BULK_LIMIT + 1)
    rows = await _backend(request).read(lambda reads: reads.query_instances(hub, **query))
    if len(rows) > BULK_LIMIT:
        raise BadParameter(f"the filter matches more than {BULK_LIMIT} instances; narrow it down")
    return [r.instance_id for r in rows]


def _applies(action: str, status: int) -> bool:
    if action == "purge":
        return status in ev.TERMINAL
    if action == "resume":
        return status == views.STATUS_VALUES["SUSPENDED"]
    if action == "suspend":
        return status not in ev.TERMINAL and status != views.STATUS_VALUES["SUSPENDED"]
    return status not in ev.TERMINAL


async def bulk(request: Request):
    """Apply one action to many instances; those it does not apply to (a running one to purge) are skipped."""
    hub, backend = _hub(request), _backend(request)
    body = await _body(request)
    action = body.get("action")
    if action not in BULK_ACTIONS:
        raise BadParameter(f"'action' must be one of {', '.join(BULK_ACTIONS)}")
    ids = await _targets(request, hub, body)
    rows = [row for i in ids if (row := backend.instance(hub, i)) is not None and _applies(action, row.status)]
    if body.get("dryRun"):
        return JSONResponse({"count": len(rows), "matched": len(ids)})
    reason = "from the dashboard (bulk)"
    with backend.tx():  # one change: all or nothing
        for row in rows:
            if action == "terminate":
                control.terminate(backend, hub, row.instance_id, json.dumps(reason), False)
            elif action == "suspend":
                control.suspend(backend, hub, row.instance_id, reason)
            elif action == "resume":
                control.resume(backend, hub, row.instance_id, reason)
        done = control.purge(backend, hub, [r.instance_id for r in rows], False) if action == "purge" else len(rows)
    return JSONResponse({"count": done, "matched": len(ids)})


async def workers(request: Request):
    hub = _hub(request)
    return JSONResponse(request.app.state.workers.describe(hub, _backend(request).dispatch))


async def settings(request: Request):
    """What the page needs to know about the dashboard itself."""
    return JSONResponse({"readOnly": bool(getattr(request.app.state, "read_only", False))})


ROUTES = [
    Route("/api/settings", settings),
    Route("/api/hubs/{hub}/start", start, methods=["POST"]),
    Route("/api/hubs/{hub}/bulk", bulk, methods=["POST"]),
    Route("/api/hubs/{hub}/workers", workers),
]
