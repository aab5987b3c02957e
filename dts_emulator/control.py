"""Management of instances on a client's behalf: events, terminate, suspend, purge, restart.

Like DTS, terminate, suspend and resume are messages to the instance: the worker
applies them in order with everything else the instance receives.
"""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend
from .store import InstanceRow


class NotFound(Exception):
    pass


class InvalidState(Exception):
    pass


def _existing(backend: Backend, hub: str, instance_id: str) -> InstanceRow:
    row = backend.instances.get(hub, instance_id)
    if row is None:
        raise NotFound(f"no orchestration instance '{instance_id}' in task hub '{hub}'")
    return row


def raise_event(backend: Backend, hub: str, instance_id: str, name: str, data: str | None) -> None:
    with backend.tx():
        row = _existing(backend, hub, instance_id)
        if row.status in ev.TERMINAL:
            raise InvalidState(f"instance '{instance_id}' has already ended; it cannot receive event '{name}'")
        backend.post.send_to_instance(hub, instance_id, ev.event(
            eventRaised=pb.EventRaisedEvent(name=name, input=ev.string(data)), at=backend.clock.now()))


def terminate(backend: Backend, hub: str, instance_id: str, output: str | None, recursive: bool) -> None:
    """Ask the instance (and, if recursive, its running descendants) to stop.

    The tree is walked with a list, not by recursion: a chain of sub-orchestrations
    may be deeper than Python's stack.
    """
    with backend.tx():
        pending = [instance_id]
        while pending:
            current = pending.pop()
            if _terminate_one(backend, hub, current, output, recursive) and recursive:
                pending.extend(backend.instances.children(hub, current))


def _terminate_one(backend: Backend, hub: str, instance_id: str, output: str | None, recursive: bool) -> bool:
    """True if the instance was running and was asked to stop (its children may have work to stop too)."""
    row = backend.instances.get(hub, instance_id)
    if row is None or row.status in ev.TERMINAL:
        return False
    if row.status == pb.ORCHESTRATION_STATUS_PENDING and not backend.instances.history(hub, instance_id):
        # No worker has run it yet (it may be scheduled for later): end it here.
        row.status, row.output = pb.ORCHESTRATION_STATUS_TERMINATED, output
        backend.instances.finish(row)
        return False
    terminated = pb.ExecutionTerminatedEvent(input=ev.string(output), recurse=recursive)
    backend.post.send_to_instance(hub, instance_id, ev.event(executionTerminated=terminated, at=backend.clock.now()))
    return True


def suspend(backend: Backend, hub: str, instance_id: str, reason: str | None) -> None:
    _state_change(backend, hub, instance_id, reason, suspend=True)


def resume(backend: Backend, hub: str, instance_id: str, reason: str | None) -> None:
    _state_change(backend, hub, instance_id, reason, suspend=False)


def _state_change(backend: Backend, hub: str, instance_id: str, reason: str | None, suspend: bool) -> None:
    with backend.tx():
        row = _existing(backend, hub, instance_id)
        if row.status in ev.TERMINAL:
            verb = "suspend" if suspend else "resume"
            raise InvalidState(f"cannot {verb} instance '{instance_id}': it has already ended")
        if suspend:
            e = ev.event(executionSuspended=pb.ExecutionSuspendedEvent(input=ev.string(reason)), at=backend.clock.now())
        else:
            e = ev.event(executionResumed=pb.ExecutionResumedEvent(input=ev.string(reason)), at=backend.clock.now())
        backend.post.send_to_instance(hub, instance_id, e)


def purge(backend: Backend, hub: str, instance_ids: list[str], recursive: bool) -> int:
    """Delete ended instances (and their descendants when recursive); running ones are kept.

    Walked with a list, not by recursion (see ``terminate``).
    """
    deleted = 0
    with backend.tx():
        pending = list(reversed(instance_ids))
        while pending:
            instance_id = pending.pop()
            row = backend.instances.get(hub, instance_id)
            if row is None or row.status not in ev.TERMINAL:
                continue
            if recursive:
                pending.extend(reversed(backend.instances.children(hub, instance_id)))
            backend.instances.delete(hub, instance_id)
            deleted += 1
    return deleted


def restart(backend: Backend, hub: str, instance_id: str, new_id: bool) -> str:
    """Start the same orchestration with the same input, under the old or a new ID."""
    with backend.tx():
        row = _existing(backend, hub, instance_id)
        if row.status not in ev.TERMINAL:
            raise InvalidState(f"instance '{instance_id}' is still running; only ended instances can be restarted")
        target = ev.new_id() if new_id else instance_id
        backend.instances.create(hub, target, row.name, version=row.version, input=row.input, tags=row.tags)
    return target


def rewind(backend: Backend, hub: str, instance_id: str, reason: str | None) -> None:
    """Re-run a failed instance from where it failed; the worker rewrites its history."""
    with backend.tx():
        row = _existing(backend, hub, instance_id)
        if row.status != pb.ORCHESTRATION_STATUS_FAILED:
            status = pb.OrchestrationStatus.Name(row.status)
            raise InvalidState(f"only failed instances can be rewound; '{instance_id}' is {status}")
        prepare_rewind(backend, row, reason)


def prepare_rewind(backend: Backend, row: InstanceRow, reason: str | None) -> None:
    row.status = pb.ORCHESTRATION_STATUS_RUNNING
    row.output = row.failure = row.completed_at = None
    row.updated_at = backend.clock.now()
    backend.instances.put(row)
    backend.post.send_to_instance(row.hub, row.instance_id, ev.event(
        executionRewound=pb.ExecutionRewoundEvent(reason=ev.string(reason)), at=backend.clock.now()))
