"""Entity work items: batches of operations, what their completion changes, and client requests.

Operations go to workers in batches, one batch per entity at a time, and a batch takes
effect only when its completion commits. An entity's inbox and its locks (the lock
messages handled without a worker) are ``inbox.py``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend
from .errors import Refused
from .inbox import OPERATIONS, deliverable
from .store import ENTITY, EntityRow
from .validation import check_entity_id, check_instance_id, check_name, field_size, message_size, too_large

log = logging.getLogger("dts_emulator.entities")

# Operations per batch: large enough to amortize a round trip, small enough that a
# batch's results and state reach callers promptly.
MAX_BATCH = 500


class EntityStateTooLarge(Refused):
    """A batch's new state exceeds the limit: the batch fails, the state stays as it was."""


@dataclass
class Operation:
    """One leased operation: where its result goes, if anywhere, and what the operation log says of it."""

    message_id: int
    request_id: str
    caller: str | None
    caller_execution: str | None
    name: str
    input: str | None
    sender: str | None
    sent_at: float


def build(backend: Backend, hub: str, entity_id: str, stream: int) -> pb.WorkItem | None:
    """Lease the entity's deliverable operations, up to the next lock message.

    A batch holds at most MAX_BATCH operations and fits in one message the worker
    receives; an operation that cannot fit even alone fails (its caller learns why).
    """
    row = backend.inboxes.row(hub, entity_id)
    operations: list[Operation] = []
    item = pb.WorkItem()  # filled in place: constructors would copy every operation again
    request = item.entityRequest
    size = message_size([row.state.encode()] if row.state is not None else [])
    for message, e in deliverable(row, backend.post.iter_visible(hub, ENTITY, entity_id)):
        kind = ev.kind_of(e)
        if kind not in OPERATIONS or len(operations) == MAX_BATCH:
            break
        op = getattr(e, kind)
        called = kind == "entityOperationCalled"
        operation = Operation(
            message.id, op.requestId,
            op.parentInstanceId.value if called else None,
            op.parentExecutionId.value if called and op.HasField("parentExecutionId") else None,
            op.operation, op.input.value if op.HasField("input") else None, message.sender, ev.seconds(e.timestamp),
        )
        size += field_size(message.payload)  # the event is larger than the operation it carries
        if size > backend.max_message_bytes:
            if operations:
                break  # the next batch starts with it
            _refuse_oversized(backend, hub, entity_id, operation, op.operation, size)
            return None
        operations.append(operation)
        added = request.operations.add(operation=op.operation, requestId=op.requestId)
        if op.HasField("input"):
            added.input.value = op.input.value
    if not operations:
        return None
    lease = backend.streams.lease(hub, ENTITY, entity_id, stream, operations)
    item.completionToken = lease.token
    request.instanceId = entity_id
    if row.state is not None:
        request.entityState.value = row.state
    return item


def _refuse_oversized(backend: Backend, hub: str, entity_id: str, operation: Operation, name: str,
                      size: int) -> None:
    """One operation (with the entity's state) is more than a worker receives: it fails, the rest flows."""
    problem = too_large(f"operation '{name}' on entity '{entity_id}' (with the entity's state)", size,
                        backend.max_message_bytes)
    log.warning("failing an operation: %s", problem)
    with backend.tx():
        backend.endings.fail_operations(hub, entity_id, [operation], ev.failure(problem, "MessageTooLarge"))


def complete(backend: Backend, result: pb.EntityBatchResult) -> None:
    """Commit a batch: new state, results to callers, signals and starts it sent."""
    with backend.retries.completing(result.completionToken) as lease:
        operations: list[Operation] = lease.data
        hub, entity_id = lease.hub, lease.target
        try:
            with backend.tx():
                _apply(backend, hub, entity_id, operations, result)
        except EntityStateTooLarge as exc:
            # The batch is consumed with its state unchanged; callers learn why.
            with backend.tx():
                backend.endings.fail_operations(hub, entity_id, operations, ev.failure(str(exc), "EntityStateTooLarge"))
            raise


def _apply(backend: Backend, hub: str, entity_id: str, operations: list[Operation],
           result: pb.EntityBatchResult) -> None:
    results = list(result.results)
    if len(results) < len(operations):
        # A batch that failed as a whole (or stopped early) fails what it did not run.
        reason = result.failureDetails if result.HasField("failureDetails") else ev.failure(
            "the entity batch ended before this operation ran")
        results += [pb.OperationResult(failure=pb.OperationResultFailure(failureDetails=reason))
                    for _ in operations[len(results):]]
    row = backend.inboxes.row(hub, entity_id)
    state = ev.optional_string(result, "entityState")
    if state is not None and len(state.encode()) > backend.entity_state_limit:
        raise EntityStateTooLarge(
            f"entity '{entity_id}' state is {len(state.encode())} bytes; "
            f"the limit is {backend.entity_state_limit} bytes (1 MB)")
    row.state = state
    backend.endings.answer_operations(row, operations, results)
    for action in result.actions:
        _side_effect(backend, hub, entity_id, action)
    backend.post.wake(hub, ENTITY, entity_id)


def _side_effect(backend: Backend, hub: str, entity_id: str, action: pb.OperationAction) -> None:
    if action.HasField("sendSignal"):
        s = action.sendSignal
        problem = check_entity_id(s.instanceId) or check_name("operation name", s.name)
        if problem:
            log.warning("entity %s signalled an invalid entity: %s", entity_id, problem)
            return
        signal = pb.EntityOperationSignaledEvent(
            requestId=ev.new_id(), operation=s.name, input=s.input if s.HasField("input") else None,
            scheduledTime=s.scheduledTime if s.HasField("scheduledTime") else None,
            targetInstanceId=ev.string(s.instanceId))
        e = ev.event(entityOperationSignaled=signal, at=backend.clock.now())
        backend.post.send(hub, ENTITY, s.instanceId, e.SerializeToString(),
                          visible_at=ev.optional_seconds(s, "scheduledTime"), sender=entity_id)
    elif action.HasField("startNewOrchestration"):
        s = action.startNewOrchestration
        instance_id = s.instanceId or ev.new_id()
        problem = check_instance_id(instance_id) or check_name("orchestration name", s.name)
        existing = backend.instances.get(hub, instance_id)
        if problem is None and existing is not None and existing.status not in ev.TERMINAL:
            problem = f"instance '{instance_id}' already exists and is running"
        if problem:
            log.warning("entity %s could not start an orchestration: %s", entity_id, problem)
            return
        backend.instances.create(hub, instance_id, s.name, version=ev.optional_string(s, "version"),
                                 input=ev.optional_string(s, "input"),
                                 scheduled_start=ev.optional_seconds(s, "scheduledTime"), started_by=entity_id)


def signal(backend: Backend, hub: str, request: pb.SignalEntityRequest) -> None:
    """A client's signal: queued in the entity's inbox (or for its scheduled time)."""
    e = ev.event(entityOperationSignaled=pb.EntityOperationSignaledEvent(
        requestId=request.requestId or ev.new_id(), operation=request.name,
        input=request.input if request.HasField("input") else None,
        scheduledTime=request.scheduledTime if request.HasField("scheduledTime") else None,
        targetInstanceId=ev.string(request.instanceId)), at=backend.clock.now())
    with backend.tx():
        backend.post.send(hub, ENTITY, request.instanceId, e.SerializeToString(),
                          visible_at=ev.optional_seconds(request, "scheduledTime"), sender=None)


def metadata(backend: Backend, row: EntityRow, include_state: bool) -> pb.EntityMetadata:
    return pb.EntityMetadata(
        instanceId=row.instance_id,
        lastModifiedTime=ev.timestamp(row.last_modified),
        backlogQueueSize=backend.backlog(row.hub, row.instance_id),
        lockedBy=ev.string(row.lock_owner),
        serializedState=ev.string(row.state) if include_state else None,
    )


def clean(backend: Backend, hub: str, remove_empty: bool, release_orphaned: bool) -> tuple[int, int]:
    """Release locks whose holder has ended or vanished; drop entities left empty."""
    removed = released = 0
    with backend.tx():
        for row in backend.inboxes.locked(hub):
            owner = backend.instances.get(hub, row.lock_owner)
            orphaned = owner is None or owner.status in ev.TERMINAL
            if release_orphaned and orphaned:
                row.lock_owner = row.critical_section = None
                backend.inboxes.put(row)
                backend.post.wake(hub, ENTITY, row.instance_id)
                released += 1
                if row.state is None and remove_empty:
                    removed += 1
    return removed, released
