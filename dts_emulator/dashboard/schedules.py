"""The schedules view: the SDK's recurring schedules, read from the entities that hold them.

The SDK (``durabletask.scheduled``) keeps each schedule as the entity ``@schedule@<id>``;
its state carries the configuration (orchestration, interval as a .NET TimeSpan, start and
end), the status (ordinal 0/1/2 or its name), and the last and next run. Nothing here is
stored apart: the list reads the entity rows through the same reader as the entities list,
and a schedule's page reads its row from the engine's memory.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from ..backend import Backend
from ..paging import split_page
from ..store import EntityRow
from .params import MAX_PAGE, _backend, _hub, _id, _int
from .payload import JSONResponse
from .payload import parse_stored as parse_json

PREFIX = "@schedule@"  # the SDK's entity name for a schedule, lowercased as entity names are
_STATUSES = {0: "Uninitialized", 1: "Active", 2: "Paused"}  # the SDK's ScheduleStatus ordinals


def _get(data: dict, *keys: str) -> Any:
    """The first key present: states from older Python workers use snake_case names."""
    return next((data[k] for k in keys if k in data), None)


def _status(value: Any) -> str:
    if isinstance(value, bool):
        return "Unknown"
    if isinstance(value, int):
        return _STATUSES.get(value, "Unknown")
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _STATUSES.get(int(text), "Unknown")
        return next((s for s in _STATUSES.values() if s.lower() == text.lower()), "Unknown")
    return "Unknown"


def _last_instance(schedule_id: str, config: dict, last_run: Any) -> str | None:
    """The ID the SDK gave the last run's orchestration: the configured one, or ``<id>-<last run>``."""
    fixed = _get(config, "OrchestrationInstanceId", "orchestration_instance_id")
    if isinstance(fixed, str) and fixed:
        return fixed
    return f"{schedule_id}-{last_run}" if isinstance(last_run, str) and last_run else None


def describe(backend: Backend, row: EntityRow) -> dict:
    """One schedule as the page shows it; a state the SDK did not write shows as status Unknown."""
    schedule_id = row.instance_id[len(PREFIX):]
    state = parse_json(row.state)
    state = state if isinstance(state, dict) else {}
    config = _get(state, "ScheduleConfiguration", "schedule_configuration")
    config = config if isinstance(config, dict) else {}
    interval = _get(config, "Interval", "interval")
    if interval is None and (seconds := config.get("interval_seconds")) is not None:
        interval = f"{seconds} s"
    last_run = _get(state, "LastRunAt", "last_run_at")
    last_instance = _last_instance(schedule_id, config, last_run)
    if last_instance is not None and backend.instance(row.hub, last_instance) is None:
        last_instance = None  # purged, or never started: nothing to link to
    return {
        "id": schedule_id,
        "entityId": row.instance_id,
        "orchestration": _get(config, "OrchestrationName", "orchestration_name"),
        "interval": interval,
        "status": _status(_get(state, "Status", "status")),
        "lastRun": last_run,
        "nextRun": _get(state, "NextRunAt", "next_run_at"),
        "lastInstanceId": last_instance,
        "startAt": _get(config, "StartAt", "start_at"),
        "endAt": _get(config, "EndAt", "end_at"),
        "created": _get(state, "ScheduleCreatedAt", "schedule_created_at"),
        "lastModified": _get(state, "ScheduleLastModifiedAt", "schedule_last_modified_at"),
        "input": _get(config, "OrchestrationInput", "orchestration_input"),
        "fixedInstanceId": _get(config, "OrchestrationInstanceId", "orchestration_instance_id"),
    }


async def schedule_list(request: Request):
    """A page of the hub's schedules by ID; ``next`` is the ``after`` of the following page."""
    hub, backend = _hub(request), _backend(request)
    size = _int(request, "page_size", 50, 1, MAX_PAGE)
    after = request.query_params.get("after")
    query = dict(prefix=PREFIX, after=PREFIX + after if after else None, limit=size + 1)
    rows, more = split_page(await backend.read(lambda reads: reads.query_entities(hub, **query)), size)
    return JSONResponse({"items": [describe(backend, r) for r in rows],
                         "next": rows[-1].instance_id[len(PREFIX):] if more else None})


async def schedule(request: Request):
    hub, schedule_id, backend = _hub(request), _id(request), _backend(request)
    row = backend.entity(hub, PREFIX + schedule_id)
    if row is None:
        raise HTTPException(404, f"no schedule '{schedule_id}' in task hub '{hub}'")
    return JSONResponse({"schedule": describe(backend, row)})


ROUTES = [
    Route("/api/hubs/{hub}/schedules", schedule_list),
    Route("/api/hubs/{hub}/schedule", schedule),
]
