"""Activity work items: each scheduled task is one message, leased to one worker."""

from __future__ import annotations

import logging

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend
from .store import ACTIVITY
from .validation import message_size, too_large

log = logging.getLogger("dts_emulator.activities")


def build(backend: Backend, hub: str, key: str, stream: int) -> pb.WorkItem | None:
    message = backend.post.message(int(key))
    if message is None:
        return None
    request = pb.ActivityRequest.FromString(message.payload)
    lease = backend.streams.lease(hub, ACTIVITY, key, stream, request)
    size = message_size([message.payload])
    if size > backend.max_message_bytes:
        backend.streams.release(lease.token)
        problem = too_large(f"activity '{request.name}' (its input)", size, backend.max_message_bytes)
        log.warning("failing activity %s of instance %s: %s", request.name,
                    request.orchestrationInstance.instanceId, problem)
        with backend.tx():
            backend.endings.fail_activity(lease, problem)
        return None
    return pb.WorkItem(activityRequest=request, completionToken=lease.token)


def complete(backend: Backend, response: pb.ActivityResponse) -> None:
    """Consume the activity message and hand its outcome to the orchestration."""
    with backend.retries.completing(response.completionToken) as lease, backend.tx():
        request: pb.ActivityRequest = lease.data
        if response.HasField("failureDetails"):
            e = ev.event(taskFailed=pb.TaskFailedEvent(
                taskScheduledId=request.taskId, failureDetails=response.failureDetails), at=backend.clock.now())
        else:
            e = ev.event(taskCompleted=pb.TaskCompletedEvent(
                taskScheduledId=request.taskId,
                result=response.result if response.HasField("result") else None), at=backend.clock.now())
        backend.endings.conclude_activity(lease, e)
