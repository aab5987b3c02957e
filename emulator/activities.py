"""Activity work items: each scheduled task is one message, leased to one worker."""

from __future__ import annotations

import logging

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend
from .dispatch import Lease
from .store import ACTIVITY
from .validation import message_size, too_large

log = logging.getLogger("emulator.activities")


def name_of(backend: Backend, key: str) -> tuple[str, str | None]:
    message = backend.store.get_message(int(key))
    if message is None:
        return "", None
    request = pb.ActivityRequest.FromString(message.payload)
    return request.name, ev.optional_string(request, "version")


def build(backend: Backend, hub: str, key: str, stream: int) -> pb.WorkItem | None:
    message = backend.store.get_message(int(key))
    if message is None:
        return None
    request = pb.ActivityRequest.FromString(message.payload)
    lease = backend.dispatch.lease(hub, ACTIVITY, key, stream, request)
    size = message_size([message.payload])
    if size > backend.max_message_bytes:
        backend.dispatch.release(lease.token)
        problem = too_large(f"activity '{request.name}' (its input)", size, backend.max_message_bytes)
        log.warning("failing activity %s of instance %s: %s", request.name,
                    request.orchestrationInstance.instanceId, problem)
        with backend.tx():
            fail(backend, lease, problem)
        return None
    return pb.WorkItem(activityRequest=request, completionToken=lease.token)


def complete(backend: Backend, response: pb.ActivityResponse) -> None:
    """Consume the activity message and hand its outcome to the orchestration."""
    with backend.completing(response.completionToken) as lease, backend.tx():
        request: pb.ActivityRequest = lease.data
        if response.HasField("failureDetails"):
            e = ev.event(taskFailed=pb.TaskFailedEvent(
                taskScheduledId=request.taskId, failureDetails=response.failureDetails))
        else:
            e = ev.event(taskCompleted=pb.TaskCompletedEvent(
                taskScheduledId=request.taskId,
                result=response.result if response.HasField("result") else None))
        _conclude(backend, lease, e)


def fail(backend: Backend, lease: Lease, reason: str) -> None:
    """The activity cannot run: the orchestration sees it fail (non-retriable) with ``reason``."""
    request: pb.ActivityRequest = lease.data
    _conclude(backend, lease, ev.event(taskFailed=pb.TaskFailedEvent(
        taskScheduledId=request.taskId, failureDetails=ev.failure(reason))))


def _conclude(backend: Backend, lease: Lease, outcome: pb.HistoryEvent) -> None:
    request: pb.ActivityRequest = lease.data
    backend.store.delete_messages([int(lease.target)])
    backend.send_to_instance(lease.hub, request.orchestrationInstance.instanceId, outcome,
                             ev.optional_string(request.orchestrationInstance, "executionId"))
