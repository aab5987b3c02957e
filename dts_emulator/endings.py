"""How work items end: an activity concluded, an entity's callers answered, and any work failed for good.

Failing for good is what the engine does with work it cannot apply (too large for a
worker, or failed MAX_ATTEMPTS times): the instance fails, the activity's orchestration
sees it fail, or the entity's operations fail with their state unchanged.
"""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .clock import Clock
from .dispatch import Lease
from .inbox import Inboxes
from .instances import Instances
from .post import Post
from .store import ACTIVITY, ENTITY, ORCHESTRATION, EntityRow


class Endings:
    def __init__(self, instances: Instances, post: Post, inboxes: Inboxes, clock: Clock):
        self._instances = instances
        self._post = post
        self._inboxes = inboxes
        self._clock = clock

    def conclude_activity(self, lease: Lease, outcome: pb.HistoryEvent) -> None:
        """Consume the activity's message and hand its outcome to its orchestration."""
        request: pb.ActivityRequest = lease.data
        self._post.consume([int(lease.target)])
        self._post.send_to_instance(lease.hub, request.orchestrationInstance.instanceId, outcome,
                                    ev.optional_string(request.orchestrationInstance, "executionId"))

    def answer_operations(self, row: EntityRow, operations: list, results: list[pb.OperationResult]) -> None:
        """Store the entity as it is after a batch, consume its operations, and tell each caller its result.

        ``operations``: what was leased (see ``entities.Operation``), ``results`` in the same order.
        """
        before = self._inboxes.row(row.hub, row.instance_id).state  # ``row`` holds the batch's new state
        row.last_modified = self._clock.now()
        self._inboxes.put(row)
        self._inboxes.log_batch(row, before, operations, results)
        self._post.consume([op.message_id for op in operations])
        for op, outcome in zip(operations, results, strict=False):
            if op.caller is None:
                continue
            if outcome.HasField("failure"):
                e = ev.event(entityOperationFailed=pb.EntityOperationFailedEvent(
                    requestId=op.request_id, failureDetails=outcome.failure.failureDetails), at=self._clock.now())
            else:
                e = ev.event(entityOperationCompleted=pb.EntityOperationCompletedEvent(
                    requestId=op.request_id,
                    output=outcome.success.result if outcome.success.HasField("result") else None),
                    at=self._clock.now())
            self._post.send_to_instance(row.hub, op.caller, e, op.caller_execution)

    # -- failing for good -------------------------------------------------------------------

    def fail_instance(self, hub: str, instance_id: str, message_ids: list[int], message: str) -> None:
        """End the instance as FAILED with ``message``, consuming the messages it was given."""
        row = self._instances.get(hub, instance_id)
        self._post.consume(message_ids)
        if row is None or row.status in ev.TERMINAL:
            return
        row.status = pb.ORCHESTRATION_STATUS_FAILED
        row.failure = ev.failure(message).SerializeToString()
        self._instances.finish(row)

    def fail_activity(self, lease: Lease, reason: str) -> None:
        """The activity cannot run: the orchestration sees it fail (non-retriable) with ``reason``."""
        request: pb.ActivityRequest = lease.data
        self.conclude_activity(lease, ev.event(taskFailed=pb.TaskFailedEvent(
            taskScheduledId=request.taskId, failureDetails=ev.failure(reason)), at=self._clock.now()))

    def fail_operations(self, hub: str, entity_id: str, operations: list, failure: pb.TaskFailureDetails) -> None:
        """The operations fail with ``failure``; the entity's state stays as it was."""
        results = [pb.OperationResult(failure=pb.OperationResultFailure(failureDetails=failure)) for _ in operations]
        self.answer_operations(self._inboxes.row(hub, entity_id), operations, results)
        self._post.wake(hub, ENTITY, entity_id)

    def fail(self, lease: Lease, reason: str) -> None:
        """A leased work item cannot be applied, for good (in a transaction)."""
        if lease.kind == ORCHESTRATION:
            self.fail_instance(lease.hub, lease.target, lease.data.message_ids, reason)
        elif lease.kind == ACTIVITY:
            self.fail_activity(lease, reason)
        else:
            self.fail_operations(lease.hub, lease.target, lease.data, ev.failure(reason))
