"""Checking a worker's orchestration actions before any of them is applied.

A response that breaks the protocol (no action type, two completions, a status an
instance cannot end with, a lock set that is not made of entity IDs, a message
claiming another sender) is refused as a whole with a message naming the field,
and the instance fails with that message: redelivering the work item would only
get the same answer again. Problems the orchestration can handle (an invalid
sub-orchestration or entity ID as a target) are reported to it instead, where
the action is applied.
"""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .validation import check_entity_id, check_name

# The statuses a completeOrchestration action may end an instance with.
ENDINGS = frozenset(ev.TERMINAL | {pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW})
_ENDING_NAMES = ", ".join(sorted(pb.OrchestrationStatus.Name(s).removeprefix("ORCHESTRATION_STATUS_")
                                 for s in ENDINGS))


class MalformedResponse(ValueError):
    """A worker's response that no redelivery would fix."""


def check(response: pb.OrchestratorResponse, sender: str) -> None:
    """Raise MalformedResponse naming the first field that cannot be applied."""
    completions = 0
    for i, action in enumerate(response.actions):
        where = f"actions[{i}]"
        kind = action.WhichOneof("orchestratorActionType")
        if kind is None:
            raise MalformedResponse(f"{where} has no action set (OrchestratorAction.orchestratorActionType)")
        where = f"{where}.{kind}"
        if kind == "completeOrchestration":
            completions += 1
            if completions > 1:
                raise MalformedResponse(f"{where}: a second completeOrchestration; a response may complete "
                                        "its instance once")
            _check_ending(where, action.completeOrchestration)
        elif kind == "scheduleTask":
            _name(f"{where}.name", action.scheduleTask.name)
        elif kind == "createSubOrchestration":
            _name(f"{where}.name", action.createSubOrchestration.name)
        elif kind == "sendEvent":
            _name(f"{where}.name", action.sendEvent.name)
        elif kind == "sendEntityMessage":
            _check_entity_message(where, action.sendEntityMessage, sender)


def _name(field: str, value: str) -> None:
    if problem := check_name(field, value):
        raise MalformedResponse(problem)


def _check_ending(where: str, complete: pb.CompleteOrchestrationAction) -> None:
    status = complete.orchestrationStatus
    if status not in ENDINGS:
        name = pb.OrchestrationStatus.Name(status) if status in pb.OrchestrationStatus.values() else "unknown"
        raise MalformedResponse(f"{where}.orchestrationStatus is {status} ({name}); an instance can only end "
                                f"as one of {_ENDING_NAMES}")


def _check_entity_message(where: str, message: pb.SendEntityMessageAction, sender: str) -> None:
    kind = message.WhichOneof("EntityMessageType")
    if kind is None:
        raise MalformedResponse(f"{where} has no message set (SendEntityMessageAction.EntityMessageType)")
    inner = getattr(message, kind)
    where = f"{where}.{kind}"
    if kind in ("entityOperationSignaled", "entityOperationCalled"):
        _name(f"{where}.operation", inner.operation)
    if kind == "entityOperationSignaled" and (problem := check_entity_id(inner.targetInstanceId.value)):
        # A call to a bad target fails the call (its caller is told); a signal has no one to tell.
        raise MalformedResponse(f"{where}.targetInstanceId: {problem}")
    if kind == "entityOperationSignaled":
        return
    # Calls, lock requests and releases act for their parent: it must be the sender itself.
    required = kind != "entityUnlockSent" or inner.HasField("parentInstanceId")
    if required and inner.parentInstanceId.value != sender:
        raise MalformedResponse(f"{where}.parentInstanceId is '{inner.parentInstanceId.value}'; it must be the "
                                f"sending instance '{sender}'")
    if kind == "entityLockRequested":
        if not inner.lockSet:
            raise MalformedResponse(f"{where}.lockSet is empty")
        for n, entity_id in enumerate(inner.lockSet):
            if problem := check_entity_id(entity_id):
                raise MalformedResponse(f"{where}.lockSet[{n}]: {problem}")
        if inner.position != 0:
            raise MalformedResponse(f"{where}.position is {inner.position}; a lock request starts at 0")
        if not inner.criticalSectionId:
            raise MalformedResponse(f"{where}.criticalSectionId must not be empty")
