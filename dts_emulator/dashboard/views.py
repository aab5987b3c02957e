"""What the dashboard shows: stored rows and history events as plain JSON-ready dicts.

The summaries are written here, in one place, so the page only lays them out and
never builds markup from data (it sets text, which the browser escapes).
"""

from __future__ import annotations

from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import json_format

from .. import events as ev
from ..store import EntityRow, InstanceRow, MessageRow
from ..store.oplog import OperationRow
from .payload import parse_stored as parse_json  # payloads as values, or as text if not strict JSON

STATUS_NAMES = {v: pb.OrchestrationStatus.Name(v).removeprefix("ORCHESTRATION_STATUS_")
                for v in pb.OrchestrationStatus.values()}
STATUS_VALUES = {name: value for value, name in STATUS_NAMES.items()}


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return ev.timestamp(seconds).ToJsonString()


def instance_summary(row: InstanceRow) -> dict:
    return {
        "id": row.instance_id,
        "name": row.name,
        "status": STATUS_NAMES.get(row.status, str(row.status)),
        "created": iso(row.created_at),
        "updated": iso(row.updated_at),
        "customStatus": parse_json(row.custom_status),
        "version": row.version,
        "tags": row.tags,
        "scheduledStart": iso(row.scheduled_start),
    }


def instance_detail(row: InstanceRow) -> dict:
    failure = None
    if row.failure:
        details = pb.TaskFailureDetails.FromString(row.failure)
        failure = {"type": details.errorType, "message": details.errorMessage,
                   "stackTrace": details.stackTrace.value or None}
    return {
        **instance_summary(row),
        "version": row.version,
        "executionId": row.execution_id,
        "completed": iso(row.completed_at),
        "scheduledStart": iso(row.scheduled_start),
        "input": parse_json(row.input),
        "output": parse_json(row.output),
        "failure": failure,
        "parentInstanceId": row.parent_instance_id,
        "tags": row.tags,
    }


def _value(wrapper_owner, field: str) -> Any:
    return parse_json(ev.optional_string(wrapper_owner, field))


def _entity_label(instance_id: str) -> str:
    parts = instance_id.split("@")
    return f"{parts[1]}/{parts[2]}" if len(parts) == 3 else instance_id


def _summary(e: pb.HistoryEvent, calls: dict[str, str]) -> tuple[str, str, Any]:
    """(category, one-line label, payload worth showing) for one history event.

    ``calls`` maps entity call request IDs to how the call was labelled, so that a
    result says which call it answers.
    """
    kind = ev.kind_of(e)
    inner = getattr(e, kind)
    match kind:
        case "executionStarted":
            return "lifecycle", f"Started {inner.name}", _value(inner, "input")
        case "executionCompleted":
            status = STATUS_NAMES.get(inner.orchestrationStatus, "?")
            detail = inner.failureDetails.errorMessage if inner.HasField("failureDetails") else _value(inner, "result")
            return "lifecycle", f"Finished: {status}", detail
        case "executionTerminated":
            return "lifecycle", "Terminate requested", _value(inner, "input")
        case "executionSuspended":
            return "lifecycle", "Suspended", _value(inner, "input")
        case "executionResumed":
            return "lifecycle", "Resumed", _value(inner, "input")
        case "executionRewound":
            return "lifecycle", "Rewound", _value(inner, "reason")
        case "continueAsNew":
            return "lifecycle", "Continued as new", _value(inner, "input")
        case "taskScheduled":
            return "activity", f"Activity {inner.name} scheduled (task {e.eventId})", _value(inner, "input")
        case "taskCompleted":
            return "activity", f"Activity task {inner.taskScheduledId} completed", _value(inner, "result")
        case "taskFailed":
            return "activity", f"Activity task {inner.taskScheduledId} failed", inner.failureDetails.errorMessage
        case "timerCreated":
            return "timer", f"Timer {e.eventId} set", inner.fireAt.ToJsonString()
        case "timerFired":
            return "timer", f"Timer {inner.timerId} fired", inner.fireAt.ToJsonString()
        case "subOrchestrationInstanceCreated":
            return "suborchestration", f"Sub-orchestration {inner.name} started ({inner.instanceId})", \
                _value(inner, "input")
        case "subOrchestrationInstanceCompleted":
            return "suborchestration", f"Sub-orchestration task {inner.taskScheduledId} completed", \
                _value(inner, "result")
        case "subOrchestrationInstanceFailed":
            return "suborchestration", f"Sub-orchestration task {inner.taskScheduledId} failed", \
                inner.failureDetails.errorMessage
        case "eventRaised":
            return "event", f"Event '{inner.name}' received", _value(inner, "input")
        case "eventSent":
            return "event", f"Event '{inner.name}' sent to {inner.instanceId}", _value(inner, "input")
        case "entityOperationSignaled":
            target = _entity_label(inner.targetInstanceId.value)
            return "entity", f"Signal {inner.operation} to {target}", _value(inner, "input")
        case "entityOperationCalled":
            calls[inner.requestId] = f"{inner.operation} on {_entity_label(inner.targetInstanceId.value)}"
            return "entity", f"Call {calls[inner.requestId]}", _value(inner, "input")
        case "entityOperationCompleted":
            call = calls.get(inner.requestId, "entity call")
            return "entity", f"Call {call} returned", _value(inner, "output")
        case "entityOperationFailed":
            call = calls.get(inner.requestId, "entity call")
            return "entity", f"Call {call} failed", inner.failureDetails.errorMessage
        case "entityLockRequested":
            return "lock", "Lock requested on " + ", ".join(_entity_label(i) for i in inner.lockSet), None
        case "entityLockGranted":
            return "lock", "Lock granted", None
        case "entityUnlockSent":
            return "lock", f"Lock released on {_entity_label(inner.targetInstanceId.value)}", None
        case "orchestratorStarted":
            return "replay", "Worker turn started", None
        case "orchestratorCompleted":
            return "replay", "Worker turn ended", None
    return "other", kind, None


def history(events: list[pb.HistoryEvent]) -> list[dict]:
    calls: dict[str, str] = {}
    targets: dict[str, str] = {}
    return [_entry(i, e, calls, targets) for i, e in enumerate(events)]


def _links(e: pb.HistoryEvent, targets: dict[str, str]) -> list[dict]:
    """The entities and instances an event names, for the page to link (``targets``: call request ID -> entity)."""
    kind = ev.kind_of(e)
    inner = getattr(e, kind, None)
    if kind in ("entityOperationSignaled", "entityOperationCalled", "entityUnlockSent"):
        targets[getattr(inner, "requestId", "")] = inner.targetInstanceId.value
        return [{"kind": "entity", "id": inner.targetInstanceId.value}]
    if kind in ("entityOperationCompleted", "entityOperationFailed") and inner.requestId in targets:
        return [{"kind": "entity", "id": targets[inner.requestId]}]
    if kind == "entityLockRequested":
        return [{"kind": "entity", "id": i} for i in inner.lockSet]
    if kind in ("subOrchestrationInstanceCreated", "eventSent"):
        return [{"kind": "instance", "id": inner.instanceId}]
    return []


def _entry(index: int, e: pb.HistoryEvent, calls: dict[str, str], targets: dict[str, str]) -> dict:
    category, label, payload = _summary(e, calls)
    return {
        "links": _links(e, targets),
        "index": index,
        "eventId": e.eventId,
        "kind": ev.kind_of(e),
        "category": category,
        "label": label,
        "payload": payload,
        "timestamp": e.timestamp.ToJsonString() if e.HasField("timestamp") else None,
        "raw": json_format.MessageToDict(e),
    }


def entity_json(row: EntityRow, backlog: int, last_failure: float | None = None) -> dict:
    parts = row.instance_id.split("@")
    return {
        "lastFailure": iso(last_failure),
        "id": row.instance_id,
        "name": parts[1] if len(parts) == 3 else "",
        "key": parts[2] if len(parts) == 3 else row.instance_id,
        "state": parse_json(row.state),
        "lastModified": iso(row.last_modified),
        "lockedBy": row.lock_owner,
        "backlog": backlog,
    }


def pending_operation(m: MessageRow) -> dict:
    e = ev.parse(m.payload)
    kind = ev.kind_of(e)
    inner = getattr(e, kind)
    entry = {"kind": kind, "sender": m.sender, "visibleAt": iso(m.visible_at)}
    if kind in ("entityOperationSignaled", "entityOperationCalled"):
        entry.update(operation=inner.operation, input=_value(inner, "input"))
    elif kind == "entityLockRequested":
        entry.update(operation="(lock request)", input=None)
    elif kind == "entityUnlockSent":
        entry.update(operation="(lock release)", input=None)
    return entry


def _kept(text: str | None, size: int) -> dict:
    """A capped text from the operation log: its value (or text, if cut short) and its full size."""
    cut = text is not None and size > len(text.encode("utf-8", "surrogatepass"))
    return {"value": text if cut else parse_json(text), "size": size, "truncated": cut}


def operation_json(row: OperationRow) -> dict:
    """One row of an entity's operation log."""
    return {
        "seq": row.seq,
        "operation": row.operation,
        "input": _kept(row.input, row.input_size),
        "outcome": "failed" if row.failed else "succeeded",
        "result": None if row.failed else _kept(row.result, row.result_size),
        "error": {"type": row.error_type, "message": row.error_message} if row.failed else None,
        "sender": {"kind": row.sender_kind, "id": row.sender},
        "sent": iso(row.sent_at),
        "applied": iso(row.applied_at),
        "stateBefore": parse_json(row.state_before),  # capped like the others: cut short, it shows as text
        "stateAfter": _kept(row.state_after, row.state_size),
        "batchSize": row.batch_size,
    }
