"""Entities: their inboxes, batches, and critical-section locks.

An entity's messages wait in its inbox in arrival order. While an orchestration
holds the entity's lock, only that orchestration's messages are delivered; the
rest wait. Lock requests and releases are handled here, without a worker, in
the order they arrive: a lock request travels through its sorted lock set one
entity at a time (which rules out deadlocks), and the last entity to grant it
tells the orchestration. Operations go to workers in batches, one batch per
entity at a time, and a batch takes effect only when its completion commits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from durabletask.internal import orchestrator_service_pb2 as pb

from . import entity_log
from . import events as ev
from .backend import Backend, Refused
from .dispatch import Lease
from .store import ENTITY, EntityRow, MessageRow
from .validation import check_entity_id, check_instance_id, check_name, field_size, message_size, too_large

log = logging.getLogger("emulator.entities")

OPERATIONS = ("entityOperationSignaled", "entityOperationCalled")
# Operations per batch: large enough to amortize a round trip, small enough that a
# batch's results and state reach callers promptly.
MAX_BATCH = 500


class EntityStateTooLarge(Refused):
    """A batch's new state exceeds the limit: the batch fails, the state stays as it was."""


@dataclass
class Operation:
    """One leased operation: where its result goes, if anywhere, and what the log says of it."""

    message_id: int
    request_id: str
    caller: str | None
    caller_execution: str | None
    name: str
    input: str | None
    sender: str | None
    sent_at: float


def _row(backend: Backend, hub: str, entity_id: str) -> EntityRow:
    return backend.store.get_entity(hub, entity_id) or EntityRow(hub, entity_id, None, ev.now(), None, None)


def _deliverable(row: EntityRow, messages: Iterable[MessageRow]) -> Iterator[tuple[MessageRow, pb.HistoryEvent]]:
    """The messages the entity may see now (all, or only the lock holder's), parsed as they are needed."""
    return ((m, ev.parse(m.payload)) for m in messages if row.lock_owner is None or m.sender == row.lock_owner)


def pump(backend: Backend, hub: str, entity_id: str) -> None:
    """Apply leading lock messages, then mark the entity ready if an operation waits."""
    store = backend.store
    if backend.dispatch.is_leased(hub, ENTITY, entity_id):
        return
    row = _row(backend, hub, entity_id)
    messages = store.messages_for(hub, ENTITY, entity_id, visible_by=ev.now())
    while True:
        first = next(_deliverable(row, messages), None)
        if first is None:
            backend.after_commit(lambda: backend.dispatch.unready(hub, ENTITY, entity_id))
            return
        message, e = first
        kind = ev.kind_of(e)
        if kind in OPERATIONS:
            backend.after_commit(lambda: backend.dispatch.mark_ready(hub, ENTITY, entity_id))
            return
        messages.remove(message)
        store.delete_messages([message.id])
        if kind == "entityLockRequested":
            if row.lock_owner is not None:
                # The holder asked again for a lock it holds: grant it once more.
                log.warning("entity %s: lock requested again by its holder %s", entity_id, row.lock_owner)
            _grant(backend, row, e.entityLockRequested)
            entity_log.record_lock(backend, hub, entity_id, row.lock_owner, True, ev.seconds(e.timestamp), row.state)
        elif kind == "entityUnlockSent":
            if row.critical_section == e.entityUnlockSent.criticalSectionId:
                owner, row.lock_owner, row.critical_section = row.lock_owner, None, None
                row.last_modified = ev.now()
                store.put_entity(row)
                entity_log.record_lock(backend, hub, entity_id, owner, False, ev.seconds(e.timestamp), row.state)
        else:
            log.warning("entity %s: dropping unexpected message %s", entity_id, kind)


def _grant(backend: Backend, row: EntityRow, request: pb.EntityLockRequestedEvent) -> None:
    owner = request.parentInstanceId.value
    row.lock_owner, row.critical_section = owner, request.criticalSectionId
    row.last_modified = ev.now()
    backend.store.put_entity(row)
    following = request.position + 1
    if following < len(request.lockSet):
        forwarded = pb.EntityLockRequestedEvent()
        forwarded.CopyFrom(request)
        forwarded.position = following
        backend.send(row.hub, ENTITY, request.lockSet[following],
                     ev.event(entityLockRequested=forwarded).SerializeToString(), sender=owner)
    else:
        granted = ev.event(entityLockGranted=pb.EntityLockGrantedEvent(criticalSectionId=request.criticalSectionId))
        backend.send_to_instance(row.hub, owner, granted)


def release_locks_of(backend: Backend, hub: str, owner: str) -> int:
    """Free every entity an ended (or vanished) orchestration still holds."""
    released = 0
    for row in backend.store.entities_locked_by(hub, owner):
        row.lock_owner = row.critical_section = None
        row.last_modified = ev.now()
        backend.store.put_entity(row)
        entity_log.record_lock(backend, hub, row.instance_id, owner, False, None, row.state)
        backend.wake(hub, ENTITY, row.instance_id)
        released += 1
    return released


def build(backend: Backend, hub: str, entity_id: str, stream: int) -> pb.WorkItem | None:
    """Lease the entity's deliverable operations, up to the next lock message.

    A batch holds at most MAX_BATCH operations and fits in one message the worker
    receives; an operation that cannot fit even alone fails (its caller learns why).
    """
    row = _row(backend, hub, entity_id)
    operations: list[Operation] = []
    item = pb.WorkItem()  # filled in place: constructors would copy every operation again
    request = item.entityRequest
    size = message_size([row.state.encode()] if row.state is not None else [])
    for message, e in _deliverable(row, backend.store.iter_messages(hub, ENTITY, entity_id, visible_by=ev.now())):
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
    lease = backend.dispatch.lease(hub, ENTITY, entity_id, stream, operations)
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
        _fail_operations(backend, hub, entity_id, [operation], ev.failure(problem, "MessageTooLarge"))
        backend.wake(hub, ENTITY, entity_id)


def fail(backend: Backend, lease: Lease, reason: str) -> None:
    """The batch cannot be applied: its operations fail, the state stays as it was."""
    _fail_operations(backend, lease.hub, lease.target, lease.data, ev.failure(reason))


def _fail_operations(backend: Backend, hub: str, entity_id: str, operations: list[Operation],
                     failure: pb.TaskFailureDetails) -> None:
    _apply(backend, hub, entity_id, operations, pb.EntityBatchResult(
        results=[pb.OperationResult(failure=pb.OperationResultFailure(failureDetails=failure))
                 for _ in operations]), keep_state=True)


def complete(backend: Backend, result: pb.EntityBatchResult) -> None:
    """Commit a batch: new state, results to callers, signals and starts it sent."""
    with backend.completing(result.completionToken) as lease:
        operations: list[Operation] = lease.data
        hub, entity_id = lease.hub, lease.target
        try:
            with backend.tx():
                _apply(backend, hub, entity_id, operations, result)
        except EntityStateTooLarge as exc:
            # The batch is consumed with its state unchanged; callers learn why.
            with backend.tx():
                _fail_operations(backend, hub, entity_id, operations, ev.failure(str(exc), "EntityStateTooLarge"))
            raise


def _apply(backend: Backend, hub: str, entity_id: str, operations: list[Operation],
           result: pb.EntityBatchResult, keep_state: bool = False) -> None:
    store = backend.store
    results = list(result.results)
    if len(results) < len(operations):
        # A batch that failed as a whole (or stopped early) fails what it did not run.
        reason = result.failureDetails if result.HasField("failureDetails") else ev.failure(
            "the entity batch ended before this operation ran")
        results += [pb.OperationResult(failure=pb.OperationResultFailure(failureDetails=reason))
                    for _ in operations[len(results):]]
    row = _row(backend, hub, entity_id)
    before = row.state
    if not keep_state:
        state = ev.optional_string(result, "entityState")
        if state is not None and len(state.encode()) > backend.entity_state_limit:
            raise EntityStateTooLarge(
                f"entity '{entity_id}' state is {len(state.encode())} bytes; "
                f"the limit is {backend.entity_state_limit} bytes (1 MB)")
        row.state = state
    row.last_modified = ev.now()
    store.put_entity(row)
    store.delete_messages([op.message_id for op in operations])
    entity_log.record_batch(backend, hub, entity_id, operations, results, before, row.state)
    for op, outcome in zip(operations, results, strict=False):
        if op.caller is None:
            continue
        if outcome.HasField("failure"):
            e = ev.event(entityOperationFailed=pb.EntityOperationFailedEvent(
                requestId=op.request_id, failureDetails=outcome.failure.failureDetails))
        else:
            e = ev.event(entityOperationCompleted=pb.EntityOperationCompletedEvent(
                requestId=op.request_id,
                output=outcome.success.result if outcome.success.HasField("result") else None))
        backend.send_to_instance(hub, op.caller, e, op.caller_execution)
    if not keep_state:
        for action in result.actions:
            _side_effect(backend, hub, entity_id, action)
    backend.wake(hub, ENTITY, entity_id)


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
        backend.send(hub, ENTITY, s.instanceId, ev.event(entityOperationSignaled=signal).SerializeToString(),
                     visible_at=ev.optional_seconds(s, "scheduledTime"), sender=entity_id)
    elif action.HasField("startNewOrchestration"):
        s = action.startNewOrchestration
        instance_id = s.instanceId or ev.new_id()
        problem = check_instance_id(instance_id) or check_name("orchestration name", s.name)
        existing = backend.store.get_instance(hub, instance_id)
        if problem is None and existing is not None and existing.status not in ev.TERMINAL:
            problem = f"instance '{instance_id}' already exists and is running"
        if problem:
            log.warning("entity %s could not start an orchestration: %s", entity_id, problem)
            return
        backend.create_instance(hub, instance_id, s.name, version=ev.optional_string(s, "version"),
                                input=ev.optional_string(s, "input"),
                                scheduled_start=ev.optional_seconds(s, "scheduledTime"))
        backend.store.note_started_by(hub, instance_id, entity_id)


def signal(backend: Backend, hub: str, request: pb.SignalEntityRequest) -> None:
    """A client's signal: queued in the entity's inbox (or for its scheduled time)."""
    e = ev.event(entityOperationSignaled=pb.EntityOperationSignaledEvent(
        requestId=request.requestId or ev.new_id(), operation=request.name,
        input=request.input if request.HasField("input") else None,
        scheduledTime=request.scheduledTime if request.HasField("scheduledTime") else None,
        targetInstanceId=ev.string(request.instanceId)))
    with backend.tx():
        backend.send(hub, ENTITY, request.instanceId, e.SerializeToString(),
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
        for row in backend.store.query_entities(hub, locked_only=True):
            owner = backend.store.get_instance(hub, row.lock_owner)
            orphaned = owner is None or owner.status in ev.TERMINAL
            if release_orphaned and orphaned:
                row.lock_owner = row.critical_section = None
                backend.store.put_entity(row)
                backend.wake(hub, ENTITY, row.instance_id)
                released += 1
                if row.state is None and remove_empty:
                    removed += 1
    return removed, released
