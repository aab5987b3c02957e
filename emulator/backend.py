"""The emulator's engine: one lock, the store, the dispatcher, and the shared moves.

Every change happens under ``Backend.lock`` inside :meth:`Backend.tx`, which is
one SQLite transaction; in-memory effects (waking workers, scheduling due
messages) run only after it commits, so memory never runs ahead of the disk.
Orchestration and entity specifics live in ``orchestrations.py`` and
``entities.py``; this module has what both use.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .dispatch import Dispatcher, Lease
from .store import ACTIVITY, ENTITY, ORCHESTRATION, InstanceRow, Store

log = logging.getLogger("emulator")

class StaleWorkItem(Exception):
    """A completion arrived for a work item that is no longer leased to its sender."""


class _Tx:
    """``Backend.tx()``: a plain context manager, as every change goes through it."""

    __slots__ = ("backend", "outer", "transaction")

    def __init__(self, backend: Backend):
        self.backend = backend

    def __enter__(self) -> None:
        backend = self.backend
        backend.lock.acquire()
        try:
            self.outer = not backend._depth
            self.transaction = backend.store.transaction()
            self.transaction.__enter__()
        except BaseException:
            backend.lock.release()
            raise
        backend._depth += 1

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None and self.outer:
                try:
                    self.backend._drain_pumps()
                except BaseException as failure:
                    self.transaction.__exit__(type(failure), failure, failure.__traceback__)
                    raise
            self.transaction.__exit__(kind, exc, tb)  # commits, or rolls back after a failure
        except BaseException:
            self._end(committed=False)
            raise
        self._end(committed=kind is None)

    def _end(self, committed: bool) -> None:
        backend = self.backend
        backend._depth -= 1
        effects: list[Callable[[], None]] = []
        if self.outer:
            effects, backend._effects = backend._effects, []
            if not committed:
                effects = []
                backend._to_pump.clear()
        try:
            for effect in effects:
                effect()
        finally:
            backend.lock.release()


class _Completing:
    """``Backend.completing(token)``: holds the lock, yields the released lease."""

    __slots__ = ("backend", "token", "lease")

    def __init__(self, backend: Backend, token: str):
        self.backend, self.token = backend, token

    def __enter__(self) -> Lease:
        backend = self.backend
        backend.lock.acquire()
        try:
            self.lease = backend.release(self.token)
        except BaseException:
            backend.lock.release()
            raise
        return self.lease

    def __exit__(self, kind, exc, tb) -> None:
        backend, lease = self.backend, self.lease
        try:
            if kind is not None:
                with backend.tx():
                    backend.requeue(lease.hub, lease.kind, lease.target)
        finally:
            backend.lock.release()


class Backend:
    def __init__(self, store: Store, hubs: list[str], entity_state_limit: int = 1024 * 1024):
        self.store = store
        self.hubs = list(hubs)
        self.entity_state_limit = entity_state_limit
        self.lock = threading.RLock()
        self.dispatch = Dispatcher(self.lock)
        self.changed = threading.Condition(self.lock)
        self.closed = False
        self._depth = 0
        self._effects: list[Callable[[], None]] = []
        self._to_pump: dict[tuple[str, str], None] = {}
        self._watched: Counter[tuple[str, str]] = Counter()  # instances clients wait on
        self._recover()

    # -- transactions -------------------------------------------------------------

    def tx(self) -> _Tx:
        """One atomic change; wake-ups run after the commit, or not at all."""
        return _Tx(self)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self._effects.append(effect)

    def _drain_pumps(self) -> None:
        while self._to_pump:
            hub, entity_id = next(iter(self._to_pump))
            del self._to_pump[(hub, entity_id)]
            entities.pump(self, hub, entity_id)

    # -- messages -----------------------------------------------------------------

    def send(
        self,
        hub: str,
        kind: str,
        target: str,
        payload: bytes,
        visible_at: float | None = None,
        sender: str | None = None,
        execution_id: str | None = None,
    ) -> int:
        at = ev.now() if visible_at is None else visible_at
        message_id = self.store.add_message(hub, kind, target, payload, at, sender, execution_id)
        key = str(message_id) if kind == ACTIVITY else target
        if at > ev.now():
            self.after_commit(lambda: self.dispatch.schedule(hub, kind, key, at))
        else:
            self.wake(hub, kind, key)
        return message_id

    def wake(self, hub: str, kind: str, key: str) -> None:
        """Note that ``key`` may have deliverable work (inside a transaction)."""
        if kind == ENTITY:
            # A ready entity stays ready whatever queues up behind its first operation,
            # so only idle entities need their inbox examined (this keeps signals O(1)).
            if not self.dispatch.is_leased(hub, kind, key) and not self.dispatch.is_ready(hub, kind, key):
                self._to_pump[(hub, key)] = None
        else:
            self.after_commit(lambda: self.dispatch.mark_ready(hub, kind, key))

    def send_to_instance(self, hub: str, instance_id: str, e: pb.HistoryEvent, execution_id: str | None = None,
                         visible_at: float | None = None) -> None:
        """Deliver an event to an orchestration, dropping it if the instance has ended."""
        row = self.store.peek_instance(hub, instance_id)
        if row is None or row.status in ev.TERMINAL:
            log.debug("dropping %s for %s: instance missing or finished", ev.kind_of(e), instance_id)
            return
        if execution_id is not None and execution_id != row.execution_id:
            return
        if row.status == pb.ORCHESTRATION_STATUS_PENDING and row.scheduled_start:
            # Nothing may overtake the start of an instance scheduled for later.
            visible_at = max(visible_at or 0.0, row.scheduled_start)
        self.send(hub, ORCHESTRATION, instance_id, e.SerializeToString(), visible_at, execution_id=execution_id)

    def _recover(self) -> None:
        """Rebuild ready queues and due times from the messages on disk."""
        with self.lock:
            moment = ev.now()
            for hub, kind, target, earliest in self.store.pending_targets():
                if kind == ACTIVITY:
                    continue
                if earliest <= moment:
                    if kind == ENTITY:
                        self._to_pump[(hub, target)] = None
                    else:
                        self.dispatch.mark_ready(hub, kind, target)
                for m in self.store.messages_for(hub, kind, target):
                    if m.visible_at > moment:
                        self.dispatch.schedule(hub, kind, target, m.visible_at)
            for m in self.store.activity_messages():
                self.dispatch.mark_ready(m.hub, ACTIVITY, str(m.id))
            with self.tx():
                pass  # runs the entity pumps queued above

    def promote_due(self) -> None:
        keys = self.dispatch.pop_due(ev.now())
        if not keys:
            return
        with self.tx():
            for hub, kind, key in keys:
                self.wake(hub, kind, key)

    # -- instances ----------------------------------------------------------------

    def create_instance(
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
    ) -> InstanceRow:
        """Create (or replace) an instance and queue its ExecutionStarted event."""
        moment = ev.now()
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
        with self.tx():
            if self.store.peek_instance(hub, instance_id) is not None:
                self.store.delete_instance(hub, instance_id)  # replacing an ended instance
            self.store.add_instance(row)
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
            self.send(hub, ORCHESTRATION, instance_id, ev.event(executionStarted=started).SerializeToString(),
                      visible_at=scheduled_start, execution_id=execution_id)
            self.notify_changed(hub, instance_id)
        log.debug("created instance %s (%s) in hub %s", instance_id, name, hub)
        return row

    def notify_changed(self, hub: str, instance_id: str) -> None:
        """Wake the clients waiting on this instance (after the commit)."""
        if (hub, instance_id) in self._watched:
            self.after_commit(self.changed.notify_all)

    def finish_instance(self, row: InstanceRow) -> None:
        """Store an instance that reached a terminal status, and everything that follows from it.

        Messages still queued for it can no longer be processed; its parent learns the
        outcome; the entity locks it holds are freed; clients waiting on it wake up.
        """
        row.completed_at = row.updated_at = ev.now()
        self.store.put_instance(row)
        self.store.delete_messages([m.id for m in self.store.messages_for(row.hub, ORCHESTRATION, row.instance_id)])
        if row.parent_instance_id:
            if row.status == pb.ORCHESTRATION_STATUS_COMPLETED:
                e = ev.event(subOrchestrationInstanceCompleted=pb.SubOrchestrationInstanceCompletedEvent(
                    taskScheduledId=row.parent_task_id or 0, result=ev.string(row.output)))
            else:
                details = pb.TaskFailureDetails()
                if row.failure:
                    details.ParseFromString(row.failure)
                else:
                    details = ev.failure(f"Sub-orchestration '{row.instance_id}' ended as "
                                         f"{pb.OrchestrationStatus.Name(row.status)}")
                e = ev.event(subOrchestrationInstanceFailed=pb.SubOrchestrationInstanceFailedEvent(
                    taskScheduledId=row.parent_task_id or 0, failureDetails=details))
            self.send_to_instance(row.hub, row.parent_instance_id, e, row.parent_execution_id)
        entities.release_locks_of(self, row.hub, row.instance_id)
        self.notify_changed(row.hub, row.instance_id)

    def wait_for(self, hub: str, instance_id: str, predicate: Callable[[InstanceRow], bool],
                 timeout: float | None, alive: Callable[[], bool]) -> InstanceRow | None:
        """Block until the instance satisfies ``predicate``; None when it does not exist."""
        deadline = None if timeout is None else ev.now() + timeout
        key = (hub, instance_id)
        with self.lock:
            self._watched[key] += 1
            try:
                while True:
                    row = self.store.peek_instance(hub, instance_id)
                    if row is None or predicate(row):
                        return row
                    remaining = 5.0 if deadline is None else min(5.0, deadline - ev.now())
                    if remaining <= 0 or not alive() or self.closed:
                        raise TimeoutError(f"instance '{instance_id}' did not reach the awaited state in time")
                    self.changed.wait(remaining)
            finally:
                self._watched[key] -= 1
                if not self._watched[key]:
                    del self._watched[key]

    # -- worker streams -------------------------------------------------------------

    def open_stream(self) -> int:
        with self.lock:
            return self.dispatch.open_stream()

    def close_stream(self, stream: int) -> None:
        """A worker went away: whatever it held goes back to the queue."""
        with self.lock:
            leases = self.dispatch.close_stream(stream)
            if leases:
                log.info("worker stream %d ended holding %d work item(s); re-queued", stream, len(leases))
            with self.tx():
                for lease in leases:
                    self.requeue(lease.hub, lease.kind, lease.target)
            self.dispatch.condition.notify_all()

    def stream_closed(self, stream: int) -> bool:
        return self.closed or not self.dispatch.is_open(stream)

    def requeue(self, hub: str, kind: str, key: str) -> None:
        if kind == ACTIVITY:
            if self.store.get_message(int(key)) is not None:
                self.wake(hub, kind, key)
        elif self.store.messages_for(hub, kind, key, visible_by=ev.now()):
            self.wake(hub, kind, key)

    def release(self, token: str):
        lease = self.dispatch.release(token)
        if lease is None:
            raise StaleWorkItem(
                f"work item '{token}' is not leased (it completed already, was abandoned, "
                "or was re-dispatched after its worker disconnected)"
            )
        return lease

    def completing(self, token: str) -> _Completing:
        """End a lease for its completion; if applying it fails, its work goes back to the queue."""
        return _Completing(self, token)

    def abandon(self, token: str) -> None:
        with self.tx():
            lease = self.release(token)
            self.requeue(lease.hub, lease.kind, lease.target)

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            self.dispatch.condition.notify_all()
            self.changed.notify_all()


# entities.py builds on Backend, and Backend calls back into it: imported last, so that
# either module can be imported first.
from . import entities  # noqa: E402
