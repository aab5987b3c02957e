"""Orchestration instances: their records, how one is created, and everything that follows its end."""

from __future__ import annotations

import logging

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .clock import Clock
from .inbox import Inboxes
from .post import Post
from .store import ENTITY, ORCHESTRATION, InstanceRow, Store
from .transactions import Transactions
from .waiters import Waiters

log = logging.getLogger("dts_emulator")


class Instances:
    def __init__(self, store: Store, transactions: Transactions, post: Post, waiters: Waiters, inboxes: Inboxes,
                 clock: Clock):
        self._store = store
        self._transactions = transactions
        self._post = post
        self._waiters = waiters
        self._inboxes = inboxes
        self._clock = clock

    # -- records --------------------------------------------------------------------------

    def get(self, hub: str, instance_id: str) -> InstanceRow | None:
        """The instance to change (put it back with :meth:`put`)."""
        return self._store.get_instance(hub, instance_id)

    def peek(self, hub: str, instance_id: str) -> InstanceRow | None:
        """The instance as the engine has it (from memory when cached); for reading only."""
        return self._store.peek_instance(hub, instance_id)

    def put(self, row: InstanceRow) -> None:
        """Store a changed instance that has not ended; its waiting clients wake."""
        self._store.put_instance(row)
        self._waiters.changed(row.hub, row.instance_id)

    def child_rows(self, hub: str, instance_id: str) -> list[InstanceRow]:
        """The instance's sub-orchestrations, as stored (for reading)."""
        return self._store.query_instances(hub, parent=instance_id)

    def children(self, hub: str, instance_id: str) -> list[str]:
        return [child.instance_id for child in self.child_rows(hub, instance_id)]

    def delete(self, hub: str, instance_id: str) -> None:
        self._store.delete_instance(hub, instance_id)
        self._waiters.changed(hub, instance_id)

    def history(self, hub: str, instance_id: str) -> list[bytes]:
        return self._store.history(hub, instance_id)

    def append_history(self, hub: str, instance_id: str, events: list[bytes]) -> None:
        self._store.append_history(hub, instance_id, events)

    def clear_history(self, hub: str, instance_id: str) -> None:
        self._store.clear_history(hub, instance_id)

    # -- beginning and end ----------------------------------------------------------------

    def create(
        self,
        hub: str,
        instance_id: str,
        name: str,
        version: str | None = None,
        input: str | None = None,
        tags: dict[str, str] | None = None,
        scheduled_start: float | None = None,
        parent: pb.ParentInstanceInfo | None = None,
        parent_trace: pb.TraceContext | None = None,
        started_by: str | None = None,
    ) -> InstanceRow:
        """Create (or replace) an instance and queue its ExecutionStarted event.

        ``started_by``: the entity whose operation started it (shown by the dashboard).
        """
        moment = self._clock.now()
        execution_id = ev.new_id()
        row = InstanceRow(
            hub=hub, instance_id=instance_id, execution_id=execution_id, name=name, version=version,
            status=pb.ORCHESTRATION_STATUS_PENDING, input=input, output=None, custom_status=None,
            failure=None, created_at=moment, updated_at=moment, completed_at=None,
            scheduled_start=scheduled_start,
            parent_instance_id=parent.orchestrationInstance.instanceId if parent else None,
            parent_execution_id=(parent.orchestrationInstance.executionId.value or None) if parent else None,
            parent_task_id=parent.taskScheduledId if parent else None,
            tags=dict(tags or {}),
        )
        with self._transactions.tx():
            if self._store.peek_instance(hub, instance_id) is not None:
                self._store.delete_instance(hub, instance_id)  # replacing an ended instance
            self._store.add_instance(row)
            if started_by is not None:
                self._store.note_started_by(hub, instance_id, started_by)
            started = pb.ExecutionStartedEvent(
                name=name,
                version=ev.string(version),
                input=ev.string(input),
                orchestrationInstance=pb.OrchestrationInstance(
                    instanceId=instance_id, executionId=ev.string(execution_id)
                ),
                parentInstance=parent,
                scheduledStartTimestamp=ev.timestamp(scheduled_start) if scheduled_start else None,
                parentTraceContext=parent_trace,
                tags=tags or {},
            )
            self._post.send(hub, ORCHESTRATION, instance_id,
                            ev.event(executionStarted=started, at=self._clock.now()).SerializeToString(),
                            visible_at=scheduled_start, execution_id=execution_id)
            self._waiters.changed(hub, instance_id)
        log.debug("created instance %s (%s) in hub %s", instance_id, name, hub)
        return row

    def finish(self, row: InstanceRow) -> None:
        """Store an instance that reached a terminal status, and everything that follows from it.

        Messages still queued for it can no longer be processed; its parent learns the
        outcome; the entity locks it holds are freed and its waiting lock requests withdrawn
        (in this same transaction); clients waiting on it wake up.
        """
        moment = row.completed_at = row.updated_at = self._clock.now()
        self._store.put_instance(row)
        self._post.consume([m.id for m in self._post.queued(row.hub, ORCHESTRATION, row.instance_id)])
        if row.parent_instance_id:
            if row.status == pb.ORCHESTRATION_STATUS_COMPLETED:
                e = ev.event(subOrchestrationInstanceCompleted=pb.SubOrchestrationInstanceCompletedEvent(
                    taskScheduledId=row.parent_task_id or 0, result=ev.string(row.output)), at=moment)
            else:
                details = pb.TaskFailureDetails()
                if row.failure:
                    details.ParseFromString(row.failure)
                else:
                    details = ev.failure(f"Sub-orchestration '{row.instance_id}' ended as "
                                         f"{pb.OrchestrationStatus.Name(row.status)}")
                e = ev.event(subOrchestrationInstanceFailed=pb.SubOrchestrationInstanceFailedEvent(
                    taskScheduledId=row.parent_task_id or 0, failureDetails=details), at=moment)
            self._post.send_to_instance(row.hub, row.parent_instance_id, e, row.parent_execution_id)
        inboxes = self._inboxes
        ended = row.instance_id
        for entity_id in inboxes.release_locks_of(row.hub, ended) + inboxes.withdraw_requests_of(row.hub, ended):
            self._post.wake(row.hub, ENTITY, entity_id)
        self._waiters.changed(row.hub, row.instance_id)
