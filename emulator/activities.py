"""Activity work items: each scheduled task is one message, leased to one worker."""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend
from .store import ACTIVITY


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
    return pb.WorkItem(activityRequest=request, completionToken=lease.token)


def complete(backend: Backend, response: pb.ActivityResponse) -> None:
    """Consume the activity message and hand its outcome to the orchestration."""
    with backend.completing(response.completionToken) as lease, backend.tx():
        request: pb.ActivityRequest = lease.data
        backend.store.delete_messages([int(lease.target)])
        if response.HasField("failureDetails"):
            e = ev.event(taskFailed=pb.TaskFailedEvent(
                taskScheduledId=request.taskId, failureDetails=response.failureDetails))
        else:
            e = ev.event(taskCompleted=pb.TaskCompletedEvent(
                taskScheduledId=request.taskId,
                result=response.result if response.HasField("result") else None))
        backend.send_to_instance(lease.hub, request.orchestrationInstance.instanceId, e,
                                 ev.optional_string(request.orchestrationInstance, "executionId"))
