"""Orchestration work items: what a worker is sent, and what its answer changes.

A work item carries the instance's stored history (``pastEvents``) and the
messages that arrived since (``newEvents``). The worker answers with actions;
:func:`complete` turns them into history events and outgoing messages in one
transaction, the way DTS records them, so that replay on the next work item sees
exactly what the worker decided.
"""

from __future__ import annotations

import itertools
import logging

from durabletask.internal import orchestrator_service_pb2 as pb

from . import actions
from . import events as ev
from .backend import Backend
from .control import prepare_rewind, terminate
from .dispatch import Lease
from .errors import Refused
from .store import ACTIVITY, ENTITY, ORCHESTRATION
from .validation import check_entity_id, check_instance_id, message_size, too_large

log = logging.getLogger("dts_emulator.orchestrations")


class Batch:
    """What a leased orchestration work item consumed."""

    def __init__(self, message_ids: list[int], new_events: list[pb.HistoryEvent], raw: list[bytes],
                 execution_id: str):
        self.message_ids = message_ids
        self.new_events = new_events
        self.raw = raw  # the same events, serialized: what goes into the history
        self.execution_id = execution_id


def build(backend: Backend, hub: str, instance_id: str, stream: int) -> pb.WorkItem | None:
    """Lease the instance's visible messages as one work item, or None if it has none."""
    post = backend.post
    row = backend.instances.peek(hub, instance_id)
    messages = post.visible(hub, ORCHESTRATION, instance_id)
    if row is None or row.status in ev.TERMINAL:
        if messages:
            with backend.tx():
                post.consume([m.id for m in messages])
        return None
    stale = [m.id for m in messages if m.execution_id and m.execution_id != row.execution_id]
    messages = [m for m in messages if m.id not in stale]
    if stale:
        with backend.tx():
            post.consume(stale)
    if not messages:
        return None
    raw = [m.payload for m in messages]
    new_events = [ev.parse(blob) for blob in raw]
    if not new_events[0].HasField("orchestratorStarted"):
        started = ev.event(orchestratorStarted=pb.OrchestratorStartedEvent(), at=backend.clock.now())
        new_events.insert(0, started)
        raw.insert(0, started.SerializeToString())
    history = backend.instances.history(hub, instance_id)
    size = message_size(itertools.chain(history, raw))
    if size > backend.max_message_bytes:
        # The SDK's worker (1.12) ignores requiresHistoryStreaming: the history must fit in one message.
        problem = too_large(f"the work item of instance '{instance_id}' (its history and new events)",
                            size, backend.max_message_bytes)
        log.warning("failing instance %s: %s", instance_id, problem)
        with backend.tx():
            backend.endings.fail_instance(hub, instance_id, [m.id for m in messages], problem)
        return None
    lease = backend.streams.lease(
        hub, ORCHESTRATION, instance_id, stream,
        Batch([m.id for m in messages], new_events, raw, row.execution_id),
    )
    # Filled in place: passing messages to constructors would copy each event again.
    item = pb.WorkItem(completionToken=lease.token)
    request = item.orchestratorRequest
    request.instanceId = instance_id
    request.executionId.value = row.execution_id
    past = request.pastEvents
    for blob in history:
        past.add().MergeFromString(blob)
    request.newEvents.extend(new_events)
    return item


def complete(backend: Backend, response: pb.OrchestratorResponse) -> None:
    """Apply a worker's answer: history, status, and every message it sends."""
    with backend.retries.completing(response.completionToken) as lease:
        try:
            if lease.target != response.instanceId:
                raise ValueError(
                    f"completion token belongs to instance '{lease.target}', not '{response.instanceId}'"
                )
            actions.check(response, lease.target)
            with backend.tx():
                _apply(backend, lease, response)
                backend.post.requeue(lease.hub, ORCHESTRATION, lease.target)
        except ValueError as exc:
            # A response the emulator cannot apply fails the instance rather than
            # leaving it stuck: the problem is in the worker's output, not transient.
            with backend.tx():
                fail(backend, lease, f"the worker's response could not be applied: {exc}")
            raise Refused(str(exc)) from exc


def fail(backend: Backend, lease: Lease, message: str) -> None:
    """The work item cannot be applied: the instance ends as FAILED with ``message``."""
    backend.endings.fail_instance(lease.hub, lease.target, lease.data.message_ids, message)


def _apply(backend: Backend, lease: Lease, response: pb.OrchestratorResponse) -> None:
    instances, hub, batch = backend.instances, lease.hub, lease.data
    row = instances.get(hub, lease.target)
    backend.post.consume(batch.message_ids)
    if row is None or row.execution_id != batch.execution_id or row.status in ev.TERMINAL:
        return  # purged, replaced or force-terminated (force.py) while the worker was busy
    taken = [(a, a.WhichOneof("orchestratorActionType")) for a in response.actions]
    rewinds = [a.rewindOrchestration for a, kind in taken if kind == "rewindOrchestration"]
    if rewinds:
        _rewind(backend, row, rewinds[-1])
        return
    history: list[pb.HistoryEvent] = []  # recorded after the batch's own events
    for e in batch.new_events:
        if e.HasField("executionSuspended"):
            row.status = pb.ORCHESTRATION_STATUS_SUSPENDED
        elif e.HasField("executionResumed"):
            row.status = pb.ORCHESTRATION_STATUS_RUNNING
    if row.status == pb.ORCHESTRATION_STATUS_PENDING:
        row.status = pb.ORCHESTRATION_STATUS_RUNNING
    if response.HasField("customStatus"):
        row.custom_status = response.customStatus.value
    row.updated_at = backend.clock.now()

    finished = None
    for action, kind in taken:
        if kind == "completeOrchestration":
            finished = action.completeOrchestration
            continue
        if kind not in _ACTIONS:
            raise ValueError(f"unknown orchestrator action '{kind}'")
        history.extend(_ACTIONS[kind](backend, hub, row, action))

    if finished is not None and finished.orchestrationStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
        _continue_as_new(backend, row, finished)
        return
    history.append(ev.event(orchestratorCompleted=pb.OrchestratorCompletedEvent(), at=backend.clock.now()))
    if finished is not None:
        row.status = finished.orchestrationStatus
        row.output = ev.optional_string(finished, "result")
        row.failure = finished.failureDetails.SerializeToString() if finished.HasField("failureDetails") else None
        history.append(ev.event(executionCompleted=pb.ExecutionCompletedEvent(
            orchestrationStatus=finished.orchestrationStatus,
            result=finished.result if finished.HasField("result") else None,
            failureDetails=finished.failureDetails if finished.HasField("failureDetails") else None,
        ), at=backend.clock.now()))
    instances.append_history(hub, row.instance_id, batch.raw + [e.SerializeToString() for e in history])
    if row.status in ev.TERMINAL:
        instances.finish(row)
    else:
        instances.put(row)


def _continue_as_new(backend: Backend, row, finished: pb.CompleteOrchestrationAction) -> None:
    instances, post, hub = backend.instances, backend.post, row.hub
    old_execution = row.execution_id
    row.execution_id = ev.new_id()
    row.input = ev.optional_string(finished, "result")
    if finished.HasField("newVersion"):
        row.version = finished.newVersion.value
    row.status = pb.ORCHESTRATION_STATUS_PENDING
    row.output = row.failure = row.completed_at = None
    instances.clear_history(hub, row.instance_id)
    instances.put(row)
    started = pb.ExecutionStartedEvent(
        name=row.name,
        version=ev.string(row.version),
        input=ev.string(row.input),
        orchestrationInstance=pb.OrchestrationInstance(
            instanceId=row.instance_id, executionId=ev.string(row.execution_id)),
        tags=row.tags,
    )
    # Messages already waiting for the old execution move on to the new one, after
    # the start and the carried-over events, in their original order.
    queued = post.queued(hub, ORCHESTRATION, row.instance_id)
    waiting = [m for m in queued if m.execution_id in (None, old_execution) and not _is_timer(m.payload)]
    post.consume([m.id for m in queued])
    post.send(hub, ORCHESTRATION, row.instance_id,
              ev.event(executionStarted=started, at=backend.clock.now()).SerializeToString(),
              execution_id=row.execution_id)
    for carried in finished.carryoverEvents:
        post.send(hub, ORCHESTRATION, row.instance_id, carried.SerializeToString(),
                  execution_id=row.execution_id)
    for m in waiting:
        post.send(hub, ORCHESTRATION, row.instance_id, m.payload, execution_id=row.execution_id)


def _is_timer(payload: bytes) -> bool:
    return ev.parse(payload).HasField("timerFired")


# -- one function per action kind: each returns the history events it records ----------


def _schedule_task(backend: Backend, hub: str, row, action: pb.OrchestratorAction):
    task = action.scheduleTask
    request = pb.ActivityRequest(
        name=task.name,
        version=task.version if task.HasField("version") else None,
        input=task.input if task.HasField("input") else None,
        orchestrationInstance=pb.OrchestrationInstance(
            instanceId=row.instance_id, executionId=ev.string(row.execution_id)),
        taskId=action.id,
        parentTraceContext=task.parentTraceContext if task.HasField("parentTraceContext") else None,
        tags=task.tags,
    )
    backend.post.send(hub, ACTIVITY, row.instance_id, request.SerializeToString(), execution_id=row.execution_id)
    return [ev.event(action.id, taskScheduled=pb.TaskScheduledEvent(
        name=task.name, version=request.version if task.HasField("version") else None,
        input=request.input if task.HasField("input") else None, tags=task.tags,
        parentTraceContext=request.parentTraceContext if task.HasField("parentTraceContext") else None),
        at=backend.clock.now())]


def _create_timer(backend: Backend, hub: str, row, action: pb.OrchestratorAction):
    fire_at = action.createTimer.fireAt
    fired = ev.event(timerFired=pb.TimerFiredEvent(fireAt=fire_at, timerId=action.id), at=backend.clock.now())
    backend.post.send(hub, ORCHESTRATION, row.instance_id, fired.SerializeToString(),
                      visible_at=ev.seconds(fire_at), execution_id=row.execution_id)
    return [ev.event(action.id, timerCreated=pb.TimerCreatedEvent(fireAt=fire_at), at=backend.clock.now())]


def _create_sub_orchestration(backend: Backend, hub: str, row, action: pb.OrchestratorAction):
    sub = action.createSubOrchestration
    child_id = sub.instanceId or ev.new_id()
    recorded = ev.event(action.id, subOrchestrationInstanceCreated=pb.SubOrchestrationInstanceCreatedEvent(
        instanceId=child_id, name=sub.name, version=sub.version if sub.HasField("version") else None,
        input=sub.input if sub.HasField("input") else None, tags=sub.tags), at=backend.clock.now())
    problem = check_instance_id(child_id)
    existing = backend.instances.peek(hub, child_id)
    if problem is None and existing is not None and existing.status not in ev.TERMINAL:
        problem = f"an orchestration instance with ID '{child_id}' already exists and is still running"
    if problem is not None:
        failed = ev.event(subOrchestrationInstanceFailed=pb.SubOrchestrationInstanceFailedEvent(
            taskScheduledId=action.id, failureDetails=ev.failure(problem)), at=backend.clock.now())
        backend.post.send(hub, ORCHESTRATION, row.instance_id, failed.SerializeToString(),
                          execution_id=row.execution_id)
        return [recorded]
    parent = pb.ParentInstanceInfo(
        taskScheduledId=action.id, name=ev.string(row.name), version=ev.string(row.version),
        orchestrationInstance=pb.OrchestrationInstance(
            instanceId=row.instance_id, executionId=ev.string(row.execution_id)))
    backend.instances.create(
        hub, child_id, sub.name,
        version=ev.optional_string(sub, "version"), input=ev.optional_string(sub, "input"),
        tags=dict(sub.tags), parent=parent,
        parent_trace=sub.parentTraceContext if sub.HasField("parentTraceContext") else None,
    )
    return [recorded]


def _send_event(backend: Backend, hub: str, row, action: pb.OrchestratorAction):
    send = action.sendEvent
    target = send.instance.instanceId
    data = send.data if send.HasField("data") else None
    raised = ev.event(eventRaised=pb.EventRaisedEvent(name=send.name, input=data), at=backend.clock.now())
    backend.post.send_to_instance(hub, target, raised)
    sent = pb.EventSentEvent(instanceId=target, name=send.name, input=data)
    return [ev.event(action.id, eventSent=sent, at=backend.clock.now())]


def _terminate(backend: Backend, hub: str, row, action: pb.OrchestratorAction):
    t = action.terminateOrchestration
    terminate(backend, hub, t.instanceId, ev.optional_string(t, "reason"), t.recurse)
    return []


def _send_entity_message(backend: Backend, hub: str, row, action: pb.OrchestratorAction):
    message = action.sendEntityMessage
    kind = message.WhichOneof("EntityMessageType")
    inner = getattr(message, kind)
    recorded = ev.event(action.id, **{kind: inner}, at=backend.clock.now())
    # A lock request's set was checked (actions.check): it starts at its first entity.
    target = inner.lockSet[0] if kind == "entityLockRequested" else inner.targetInstanceId.value
    problem = check_entity_id(target)
    if problem is not None:
        log.warning("instance %s sent an entity message that cannot be delivered: %s", row.instance_id, problem)
        if kind == "entityOperationCalled":
            failed = ev.event(entityOperationFailed=pb.EntityOperationFailedEvent(
                requestId=inner.requestId, failureDetails=ev.failure(problem)), at=backend.clock.now())
            backend.post.send(hub, ORCHESTRATION, row.instance_id, failed.SerializeToString(),
                              execution_id=row.execution_id)
        return [recorded]
    visible_at = None
    if kind == "entityOperationSignaled" and inner.HasField("scheduledTime"):
        visible_at = ev.seconds(inner.scheduledTime)
    # The entity receives the event as recorded, but without the orchestration's event ID.
    recorded.eventId = -1
    payload = recorded.SerializeToString()
    recorded.eventId = action.id
    backend.post.send(hub, ENTITY, target, payload, visible_at=visible_at, sender=row.instance_id)
    return [recorded]


def _rewind(backend: Backend, row, action: pb.RewindOrchestrationAction) -> None:
    """Adopt the worker's rewritten history (failures removed) and run again.

    Failed sub-orchestrations are rewound too; purged ones start afresh.
    """
    instances, hub = backend.instances, row.hub
    history = list(action.newHistory)
    instances.clear_history(hub, row.instance_id)
    instances.append_history(hub, row.instance_id, [e.SerializeToString() for e in history])
    row.status = pb.ORCHESTRATION_STATUS_RUNNING
    row.output = row.failure = row.completed_at = None
    row.updated_at = backend.clock.now()
    instances.put(row)
    reason = next((e.executionRewound.reason.value for e in reversed(history)
                   if e.HasField("executionRewound") and e.executionRewound.HasField("reason")), None)
    completed = {e.subOrchestrationInstanceCompleted.taskScheduledId for e in history
                 if e.HasField("subOrchestrationInstanceCompleted")}
    for e in history:
        if not e.HasField("subOrchestrationInstanceCreated") or e.eventId in completed:
            continue
        created = e.subOrchestrationInstanceCreated
        child = instances.get(hub, created.instanceId)
        if child is None:
            parent = pb.ParentInstanceInfo(
                taskScheduledId=e.eventId, name=ev.string(row.name), version=ev.string(row.version),
                orchestrationInstance=pb.OrchestrationInstance(
                    instanceId=row.instance_id, executionId=ev.string(row.execution_id)))
            instances.create(hub, created.instanceId, created.name, version=ev.optional_string(created, "version"),
                             input=ev.optional_string(created, "input"), parent=parent)
        elif child.status == pb.ORCHESTRATION_STATUS_FAILED:
            prepare_rewind(backend, child, reason)
    # A lone OrchestratorStarted makes the instance replay its clean history.
    replay = ev.event(orchestratorStarted=pb.OrchestratorStartedEvent(), at=backend.clock.now())
    backend.post.send(hub, ORCHESTRATION, row.instance_id, replay.SerializeToString(), execution_id=row.execution_id)


_ACTIONS = {
    "scheduleTask": _schedule_task,
    "createTimer": _create_timer,
    "createSubOrchestration": _create_sub_orchestration,
    "sendEvent": _send_event,
    "terminateOrchestration": _terminate,
    "sendEntityMessage": _send_entity_message,
}
