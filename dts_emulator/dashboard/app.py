"""The dashboard's HTTP routes: a JSON API under /api/ and the page that uses it.

Handlers run on the engine's event loop. Lists, searches and counts go through the
store's reader (off the engine's path); single rows come from the engine's memory;
every change goes through the same engine functions the gRPC service uses, and only
through POST. The guard (guard.py) stands in front of every route: which hosts,
origins and bodies it answers.

Each route has one form. An instance or entity ID goes as ``?id=``, never in the path:
browsers rewrite the path segments ``.`` and ``..`` however they are escaped. Handlers are
module-level functions; the backend they serve is ``request.app.state.backend``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from durabletask.internal import orchestrator_service_pb2 as pb
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .. import control, entities
from .. import events as ev
from ..backend import STORAGE_ERRORS, Backend
from ..paging import split_page
from ..store import EntityRow
from ..validation import check_entity_id
from . import drawings, listing, operations, schedules, views
from .params import MAX_PAGE, BadParameter, _backend, _body, _hub, _id, _int, _name
from .payload import JSONResponse

log = logging.getLogger("dts_emulator.dashboard")
STATIC = Path(__file__).parent / "static"


def _instance_row(request: Request):
    hub, instance_id = _hub(request), _id(request)
    row = _backend(request).instance(hub, instance_id)
    if row is None:
        raise HTTPException(404, f"no instance '{instance_id}' in task hub '{hub}'")
    return row


def _entity_id(request: Request) -> str:
    """An ID a signal may go to: it must have the entity form."""
    entity_id = _id(request)
    problem = check_entity_id(entity_id)
    if problem:
        raise BadParameter(problem)
    return entity_id


async def hubs(request: Request):
    backend = _backend(request)

    def counts(reads) -> list[tuple[str, dict[int, int], int]]:
        return [(hub, reads.count_instances_by_status(hub), reads.count_entities(hub)) for hub in backend.hubs]

    result = [{
        "name": hub,
        "instances": {views.STATUS_NAMES[s]: n for s, n in sorted(by_status.items())},
        "instanceCount": sum(by_status.values()),
        "entities": entity_count,
    } for hub, by_status, entity_count in await backend.read(counts)]
    return JSONResponse({"hubs": result})


async def instance(request: Request):
    row, backend = _instance_row(request), _backend(request)
    blobs = backend.history(row.hub, row.instance_id)  # from the engine's memory: cheap
    if row.parent_instance_id:
        starter = {"kind": "orchestration", "id": row.parent_instance_id}
    else:
        entity_id = await backend.read(lambda reads: reads.started_by(row.hub, row.instance_id))
        starter = {"kind": "entity", "id": entity_id} if entity_id else {"kind": "client", "id": None}

    def describe() -> tuple[list[dict], dict]:
        events = [ev.parse(b) for b in blobs]
        return views.history(events), drawings.draw(events, row.instance_id, starter)

    # Parsing and describing every event is not cheap: it runs off the engine's loop.
    history, drawn = await backend.offload(describe)
    return JSONResponse({"instance": {**views.instance_detail(row), "startedBy": starter}, "history": history,
                         "drawings": drawn})


async def instance_action(request: Request):
    row, backend = _instance_row(request), _backend(request)
    action = request.path_params["action"]
    body = await _body(request)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise BadParameter("'reason' must be a string")
    if action == "terminate":
        control.terminate(backend, row.hub, row.instance_id, json.dumps(reason) if reason else None, False)
    elif action == "suspend":
        control.suspend(backend, row.hub, row.instance_id, reason)
    elif action == "resume":
        control.resume(backend, row.hub, row.instance_id, reason)
    elif action == "purge":
        if row.status not in ev.TERMINAL:
            raise control.InvalidState(f"instance '{row.instance_id}' is still running; terminate it first")
        control.purge(backend, row.hub, [row.instance_id], recursive=True)
    elif action == "restart":
        new_id = control.restart(backend, row.hub, row.instance_id, bool(body.get("newInstanceId")))
        return JSONResponse({"ok": True, "instanceId": new_id})
    elif action == "rewind":
        control.rewind(backend, row.hub, row.instance_id, reason)
    elif action == "raise-event":
        name = _name(body, "name", "'name' (the event name) is required")
        data = json.dumps(body["data"]) if "data" in body else None
        control.raise_event(backend, row.hub, row.instance_id, name, data)
    else:
        raise HTTPException(404, f"unknown action '{action}'")
    return JSONResponse({"ok": True})


async def entity_list(request: Request):
    hub, backend = _hub(request), _backend(request)
    size = _int(request, "page_size", 50, 1, MAX_PAGE)
    query = dict(name_or_key=request.query_params.get("q") or None,
                 after=request.query_params.get("after") or None, limit=size + 1)

    def read(reads):
        rows, more = split_page(reads.query_entities(hub, **query), size)
        return rows, more, reads.last_failures(hub, [r.instance_id for r in rows])

    rows, more, failures = await backend.read(read)
    return JSONResponse({
        "items": [views.entity_json(r, backend.backlog(r.hub, r.instance_id), failures.get(r.instance_id))
                  for r in rows],
        "next": rows[-1].instance_id if more else None,
    })


async def entity(request: Request):
    # No format check: whatever the store holds (older files may hold malformed IDs) can be opened.
    hub, entity_id, backend = _hub(request), _id(request), _backend(request)
    row = backend.entity(hub, entity_id)
    pending = [views.pending_operation(m) for m in backend.queued(hub, entity_id)]
    if row is None and not pending:
        raise HTTPException(404, f"no entity '{entity_id}' in task hub '{hub}'")
    # An entity with queued operations but no state yet still has something to show.
    detail = views.entity_json(row or EntityRow(hub, entity_id, None, None, None, None), len(pending))
    return JSONResponse({"entity": detail, "pending": pending})


async def entity_operations(request: Request):
    """A page of the entity's operation log, newest first; ``next`` is the ``before`` of the following page."""
    hub, entity_id, backend = _hub(request), _id(request), _backend(request)
    size = _int(request, "page_size", 50, 1, MAX_PAGE)
    before = _int(request, "before", 0, 1, 2**62) or None
    rows, kept = await backend.read(
        lambda reads: (reads.entity_operations(hub, entity_id, before, size + 1), reads.operations_kept))
    rows, more = split_page(rows, size)
    return JSONResponse({"items": [views.operation_json(r) for r in rows], "next": rows[-1].seq if more else None,
                         "kept": kept})


async def signal(request: Request):
    hub, entity_id = _hub(request), _entity_id(request)
    body = await _body(request)
    operation = _name(body, "operation", "'operation' is required")
    request_pb = pb.SignalEntityRequest(instanceId=entity_id, name=operation, requestId=ev.new_id(),
                                        input=ev.string(json.dumps(body["input"])) if "input" in body else None)
    entities.signal(_backend(request), hub, request_pb)
    return JSONResponse({"ok": True})


async def page(request: Request):
    return FileResponse(STATIC / "index.html")


async def _bad_parameter(request: Request, exc: Exception):
    return JSONResponse({"error": str(exc)}, status_code=400)


async def _conflict(request: Request, exc: Exception):
    return JSONResponse({"error": str(exc)}, status_code=409)


async def _not_found(request: Request, exc: Exception):
    return JSONResponse({"error": str(exc)}, status_code=404)


async def _storage_failed(request: Request, exc: Exception):
    """The store refused the change (disk full, data file deleted): 503 with why; logged once per interval."""
    _backend(request).storage_failed(exc)
    return JSONResponse({"error": str(exc)}, status_code=503)


async def _http_error(request: Request, exc: HTTPException):
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception):
    log.exception("dashboard request %s failed", request.url.path)
    return JSONResponse({"error": f"internal error: {exc}"}, status_code=500)


ROUTES = [
    Route("/api/hubs", hubs),
    Route("/api/hubs/{hub}/instance", instance),
    Route("/api/hubs/{hub}/instance/{action}", instance_action, methods=["POST"]),
    Route("/api/hubs/{hub}/entities", entity_list),
    Route("/api/hubs/{hub}/entity", entity),
    Route("/api/hubs/{hub}/entity/operations", entity_operations),
    Route("/api/hubs/{hub}/entity/signal", signal, methods=["POST"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
    Route("/", page),
    Route("/hubs/{rest:path}", page),
]

ERRORS = {
    BadParameter: _bad_parameter,
    control.InvalidState: _conflict,
    control.NotFound: _not_found,
    HTTPException: _http_error,
    **{kind: _storage_failed for kind in STORAGE_ERRORS},
    Exception: _unexpected,
}


def create_app(backend: Backend) -> Starlette:
    """The dashboard's routes; the server puts them behind its one guard (guard.Guard)."""
    app = Starlette(routes=operations.ROUTES + listing.ROUTES + schedules.ROUTES + ROUTES, exception_handlers=ERRORS)
    app.state.backend = backend
    return app
