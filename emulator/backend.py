"""The emulator's engine core: transactions, the dispatcher, waiters, and the shared moves.

The engine is owned by one asyncio event loop (see ``server.py``): every change runs
on that loop, to completion, inside :meth:`Backend.tx`, which is one SQLite
transaction. So there is no engine lock, and nothing can observe half a change.
In-memory effects (waking worker streams and waiting clients, scheduling due
messages) run only after the commit; a failed commit discards them, and the store
undoes its own memory, so memory never runs ahead of the disk.

Orchestration and entity specifics live in ``orchestrations.py`` and ``entities.py``;
this module has what both use. Entity rules are plugged in by ``engine.py`` (the
core does not import the kinds that build on it).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from durabletask.internal import orchestrator_service_pb2 as pb

from . import clock as clocks
from . import events as ev
from .dispatch import Dispatcher, Lease, Name, resolve
from .store import ACTIVITY, ENTITY, ORCHESTRATION, EntityRow, InstanceRow, MessageRow, StorageError, Store
from .validation import MAX_MESSAGE_BYTES

log = logging.getLogger("emulator")
T = TypeVar("T")

# Retry delays after a completion or a wake-up failed to commit: no hot loop.
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 10.0
# What a failed write raises: the disk is full, the file went away, an I/O error.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (StorageError, sqlite3.Error)
# How often the same storage error is logged at most (it repeats while the disk is full).
STORAGE_LOG_INTERVAL = 10.0
# A target whose work failed this many times in a row for any reason but storage (its completion
# did not apply, or its worker's stream ended while holding it) is given up on: its instance or
# operations fail, and the rest of the hub's work flows.
MAX_ATTEMPTS = 5


class StaleWorkItem(Exception):
    """A completion arrived for a work item that is no longer leased to its sender."""


class Refused(ValueError):
    """A worker's answer could not be applied; its work was consumed and the failure recorded."""


class OverLimit(Exception):
    """More clients wait, or more worker streams are open, than the emulator admits."""


class ShuttingDown(Exception):
    """The emulator is stopping: the call should be retried against the next one."""


class EntityRules(Protocol):
    """What the core asks of the entity module (plugged in by ``engine.py``)."""

    def pump(self, backend: Backend, hub: str, entity_id: str) -> None: ...

    def release_locks_of(self, backend: Backend, hub: str, owner: str) -> int: ...


# How each kind of work item fails for good (plugged in by ``engine.py``): called in a transaction.
GiveUp = Callable[["Backend", Lease, str], None]


class _Tx:
    """``Backend.tx()``: a plain context manager, as every change goes through it."""

    __slots__ = ("backend", "outer", "transaction")

    def __init__(self, backend: Backend):
        self.backend = backend

    def __enter__(self) -> None:
        backend = self.backend
        self.outer = not backend._depth
        self.transaction = backend.store.transaction()
        self.transaction.__enter__()
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
        if not self.outer:
            return
        effects, backend._effects = backend._effects, []
        if not committed:
            backend._to_pump.clear()
            return
        for effect in effects:
            effect()


class _Completing:
    """``Backend.completing(token)``: yields the released lease; a failed apply retries later."""

    __slots__ = ("backend", "token", "lease")

    def __init__(self, backend: Backend, token: str):
        self.backend, self.token = backend, token

    def __enter__(self) -> Lease:
        self.lease = self.backend.release(self.token)
        return self.lease

    def __exit__(self, kind, exc, tb) -> None:
        backend, lease = self.backend, self.lease
        if kind is None or isinstance(exc, Refused):
            backend.forget_failures(lease)
            if kind is not None:  # refused, but committed: what follows it may run at once
                backend.requeue_now(lease)
        else:
            backend.work_failed(lease, exc)


class Backend:
    def __init__(self, store: Store, hubs: list[str], entity_rules: EntityRules,
                 namer: Callable[[Backend, str, str, str], Name],
                 entity_state_limit: int = 1024 * 1024, max_waiters: int = 10_000, max_streams: int = 1_000,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, give_up: dict[str, GiveUp] | None = None,
                 remember_leases: dict[str, float] | None = None):
        self.store = store
        self.hubs = list(hubs)
        self.entities = entity_rules
        self.entity_state_limit = entity_state_limit
        self.max_waiters = max_waiters
        self.max_streams = max_streams
        self.max_message_bytes = max_message_bytes  # the largest work item a worker is sent
        self.give_up = dict(give_up or {})
        self.dispatch = Dispatcher(lambda hub, kind, target: namer(self, hub, kind, target), remember_leases)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due_timer: asyncio.TimerHandle | None = None
        self._due_at: float | None = None
        self._skip_pending: asyncio.Handle | None = None
        self.closed = False
        self._depth = 0
        self._effects: list[Callable[[], None]] = []
        self._to_pump: dict[tuple[str, str], None] = {}
        # Instances clients wait on: a future resolved at the instance's next change, and how many wait.
        self._watchers: dict[tuple[str, str], asyncio.Future] = {}
        self._watching: Counter[tuple[str, str]] = Counter()
        self._waiting = 0
        self._failures: dict[tuple[str, str, str], int] = {}  # targets whose last apply failed
        self._attempts: dict[tuple[str, str, str], int] = {}  # failures in a row that were not storage errors
        self._storage_logged_at = float("-inf")
        # The last storage error, and how many writes had committed then (health.py: refused since?).
        self.storage_error: tuple[str, int] | None = None
        self.clock = clocks.Clock()  # this emulator's time (see clock.py); the server binds it to the engine's thread
        # The store's reader and one thread to run it on (its connection serves one thread at a time).
        self.reads = store.reads()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-reader")
        with ev.clock_bound(self.clock):  # built on the caller's thread, before the engine's own starts
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
            self.entities.pump(self, hub, entity_id)

    def retry_later(self, hub: str, kind: str, key: str, error: BaseException | None = None) -> None:
        """Give a target's work another go after a growing delay (its last attempt failed)."""
        failures = self._failures.get((hub, kind, key), 0) + 1
        self._failures[(hub, kind, key)] = failures
        delay = min(FIRST_RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)
        if isinstance(error, STORAGE_ERRORS):
            self.storage_failed(error)
        self.schedule(hub, kind, key, ev.now() + delay)

    def work_failed(self, lease: Lease, error: BaseException | str) -> None:
        """A lease's work failed: retry it after a delay, or after MAX_ATTEMPTS in a row, fail it for good.

        Storage errors are always retried (nothing is wrong with the work, and nothing is lost).
        """
        key = (lease.hub, lease.kind, lease.target)
        if isinstance(error, STORAGE_ERRORS):
            self.retry_later(lease.hub, lease.kind, lease.target, error)
            return
        attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        if attempts < MAX_ATTEMPTS or lease.kind not in self.give_up:
            if isinstance(error, BaseException):
                self.retry_later(lease.hub, lease.kind, lease.target, error)
            else:  # its worker went away: another may take it at once
                self.requeue_now(lease)
            return
        self.fail_work(lease, f"the emulator gave up on this work item after {MAX_ATTEMPTS} failed attempts; "
                              f"the last: {error}")

    def forget_failures(self, lease: Lease) -> None:
        """The lease's work is done with (applied, refused, or failed for good): forget its failures."""
        key = (lease.hub, lease.kind, lease.target)
        self._failures.pop(key, None)
        self._attempts.pop(key, None)

    def fail_work(self, lease: Lease, reason: str) -> None:
        """End a lease's work for good: its instance, its activity task or its entity operations fail."""
        try:
            with self.tx():
                self.give_up[lease.kind](self, lease, reason)
        except Exception as exc:  # keep retrying, with backoff, rather than lose the work
            if not isinstance(exc, STORAGE_ERRORS):
                log.exception("could not fail %s '%s'", lease.kind, lease.target)
            self.retry_later(lease.hub, lease.kind, lease.target, exc)
            return
        log.error("%s '%s' in hub %s failed: %s", lease.kind, lease.target, lease.hub, reason)
        self.forget_failures(lease)
        self.requeue_now(lease)

    def storage_failed(self, error: BaseException) -> None:
        """Log a storage error once per interval: it repeats for as long as the disk is full."""
        self.storage_error = (str(error), self.store.writes_committed)
        moment = time.monotonic()
        if moment - self._storage_logged_at >= STORAGE_LOG_INTERVAL:
            self._storage_logged_at = moment
            log.error("storage error on %s: %s (work is retried with backoff; nothing acknowledged is lost)",
                      self.store.path or "the in-memory database", error)

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
            self.after_commit(lambda: self.schedule(hub, kind, key, at))
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

    # -- due times --------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start keeping time on the engine's loop: delayed messages become ready when due."""
        self._loop = loop
        self._arm()
        self.consider_skipping()

    def schedule(self, hub: str, kind: str, key: str, at: float) -> None:
        self.dispatch.schedule(hub, kind, key, at)
        self._arm()
        self.consider_skipping()

    def _arm(self) -> None:
        """One timer, for the earliest due time (not a wake-up of every stream)."""
        due = self.dispatch.next_due()
        if self._loop is None or self.closed or due is None or (self._due_at is not None and self._due_at <= due):
            return
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_at = due
        self._due_timer = self._loop.call_later(max(due - ev.now(), 0.0), self._on_due)

    def _on_due(self) -> None:
        self._due_timer = self._due_at = None
        self.promote_due()
        self._arm()  # the next one (or this one again, if the wall clock lagged the loop's)

    def promote_due(self) -> None:
        keys = self.dispatch.pop_due(ev.now())
        if not keys:
            return
        try:
            with self.tx():
                for hub, kind, key in keys:
                    self.wake(hub, kind, key)
        except STORAGE_ERRORS as exc:  # an entity pump could not store its lock changes
            for hub, kind, key in keys:
                self.retry_later(hub, kind, key, exc)

    # -- time -----------------------------------------------------------------------

    def consider_skipping(self) -> None:
        """With time skipping on, look (once the current change is over) whether the clock may jump.

        Called where the engine may have become idle: a lease ended, a due time was added,
        skipping was turned on. One jump per callback, so other work runs between jumps.
        """
        if self.clock.skipping and self._loop is not None and self._skip_pending is None and not self.closed:
            self._skip_pending = self._loop.call_soon(self._skip_if_idle)

    def _skip_if_idle(self) -> None:
        self._skip_pending = None
        if not self.closed and self.skip_time():
            self.consider_skipping()  # what came due may have been stale: maybe the next one

    def skip_time(self) -> bool:
        """With time skipping on, jump to the next due time while nothing runs and nothing can.

        Nothing runs: no work item is leased to a worker. Nothing can: none is ready,
        whether or not a connected worker would take it. Returns whether it jumped.
        """
        if not self.clock.skipping or self.dispatch.leases_held() or self.dispatch.any_ready():
            return False
        due = self.dispatch.next_due()
        if due is None:
            return False
        if due > self.clock.now():
            log.debug("time skipping: %.3f s ahead to the next due time", due - self.clock.now())
            self.clock.advance_to(due)
        self.promote_due()
        self._rearm()
        return True

    def _rearm(self) -> None:
        """The clock moved: the due timer's wall-clock delay is wrong now."""
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_timer = self._due_at = None
        self._arm()

    def set_time_skipping(self, on: bool) -> None:
        self.clock.skipping = bool(on)
        self.consider_skipping()

    def advance_clock(self, seconds: float) -> None:
        """Move the clock forward (a test asked to): what came due becomes ready now."""
        self.clock.advance(seconds)
        self.promote_due()
        self._rearm()
        self.consider_skipping()

    def reset(self, time_skipping: bool = False) -> None:
        """Empty every task hub and go back to the wall clock: a fresh emulator for the next test."""
        for hub in self.hubs:
            self.delete_hub(hub)
        self._failures.clear()
        self.clock.reset(time_skipping)
        self._rearm()

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
        """Wake the clients waiting on this instance, and only them (after the commit)."""
        if (hub, instance_id) in self._watchers:
            self.after_commit(lambda: self._wake_watchers(hub, instance_id))

    def _wake_watchers(self, hub: str, instance_id: str) -> None:
        resolve(self._watchers.pop((hub, instance_id), None))

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
        self.entities.release_locks_of(self, row.hub, row.instance_id)
        self.notify_changed(row.hub, row.instance_id)

    async def wait_for(self, hub: str, instance_id: str, predicate: Callable[[InstanceRow], bool],
                       timeout: float | None) -> InstanceRow | None:
        """Wait until the instance satisfies ``predicate``; None when it does not exist.

        Costs one awaiting coroutine, no thread; only changes to this instance wake it.
        """
        row = self.store.peek_instance(hub, instance_id)
        if row is None or predicate(row):
            return row  # no wait at all, so no limit applies
        if self._waiting >= self.max_waiters:
            raise OverLimit(
                f"{self._waiting} clients are already waiting on instances; the emulator admits "
                f"{self.max_waiters} (--max-waiters); retry later")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        key = (hub, instance_id)
        self._waiting += 1
        self._watching[key] += 1
        try:
            while True:
                if self.closed:
                    raise ShuttingDown("the emulator is stopping")
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"instance '{instance_id}' did not reach the awaited state in time")
                woken = self._watchers.get(key)
                if woken is None:
                    woken = self._watchers[key] = loop.create_future()
                await asyncio.wait((woken,), timeout=remaining)  # shared: a timeout here leaves it to the others
                row = self.store.peek_instance(hub, instance_id)
                if row is None or predicate(row):
                    return row
        finally:
            self._waiting -= 1
            self._watching[key] -= 1
            if not self._watching[key]:  # the last one gone: forget the instance (no leak per timed-out wait)
                del self._watching[key]
                self._watchers.pop(key, None)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def watched(self) -> int:
        """Instances that clients wait on (each holds one future until it changes or nobody waits)."""
        return len(self._watchers)

    def delete_hub(self, hub: str) -> None:
        with self.tx():
            self.store.delete_hub(hub)
        self.dispatch.clear_hub(hub)
        for key in [k for k in self._watchers if k[0] == hub]:
            self._wake_watchers(*key)

    # -- reads ----------------------------------------------------------------------

    def instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        """The instance as the engine has it (from memory when cached); for reading only."""
        return self.store.peek_instance(hub, instance_id)

    def entity(self, hub: str, entity_id: str) -> EntityRow | None:
        return self.store.get_entity(hub, entity_id)

    def history(self, hub: str, instance_id: str) -> list[bytes]:
        return self.store.history(hub, instance_id)

    def queued(self, hub: str, entity_id: str) -> list[MessageRow]:
        """The messages waiting in an entity's inbox, in arrival order."""
        return self.store.messages_for(hub, ENTITY, entity_id)

    def backlog(self, hub: str, entity_id: str) -> int:
        return self.store.count_messages(hub, ENTITY, entity_id)

    async def read(self, query: Callable[[Any], T]) -> T:
        """Run a read-only query (lists, searches, counts) off the engine's path.

        With a data file, the store's reader has a connection of its own on a thread
        of its own, so a long scan never holds up a completion; an in-memory store
        can only be read through its one connection, on the loop.
        """
        if self.reads.same_thread:
            return query(self.reads)
        return await asyncio.get_running_loop().run_in_executor(self._reader, query, self.reads)

    async def offload(self, work: Callable[[], T]) -> T:
        """Run CPU work that touches no engine state (building a long view) on the reader's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._reader, work)

    # -- worker streams -------------------------------------------------------------

    def open_stream(self) -> int:
        if self.dispatch.open_streams() >= self.max_streams:
            raise OverLimit(
                f"{self.max_streams} worker streams are already connected, as many as the emulator admits; "
                "stop a worker or retry later")
        return self.dispatch.open_stream()

    def close_stream(self, stream: int) -> None:
        """A worker went away (or stopped answering): whatever it held goes back to the queue."""
        leases = self.dispatch.close_stream(stream)
        if not leases:
            return
        self.consider_skipping()
        log.info("worker stream %d ended holding %d work item(s); re-queued", stream, len(leases))
        for lease in leases:  # a work item that its worker cannot take (too large?) must not come back forever
            self.work_failed(lease, "the worker's stream ended while it held this work item (a message larger "
                                    "than the worker receives, or a worker that crashes on it?)")

    def stream_closed(self, stream: int) -> bool:
        return self.closed or not self.dispatch.is_open(stream)

    def requeue(self, hub: str, kind: str, key: str) -> None:
        if kind == ACTIVITY:
            if self.store.get_message(int(key)) is not None:
                self.wake(hub, kind, key)
        elif self.store.messages_for(hub, kind, key, visible_by=ev.now()):
            self.wake(hub, kind, key)

    def release(self, token: str) -> Lease:
        lease = self.dispatch.release(token)
        if lease is None:
            raise StaleWorkItem(
                f"work item '{token}' is not leased (it completed already, was abandoned, "
                "or was re-dispatched after its worker disconnected)"
            )
        self.consider_skipping()  # the last work running may have ended
        return lease

    def completing(self, token: str) -> _Completing:
        """End a lease for its completion; if applying it fails, its work is retried later."""
        return _Completing(self, token)

    def abandon(self, token: str) -> None:
        self.requeue_now(self.release(token))

    def requeue_now(self, lease: Lease) -> None:
        try:
            with self.tx():
                self.requeue(lease.hub, lease.kind, lease.target)
        except STORAGE_ERRORS as exc:
            self.retry_later(lease.hub, lease.kind, lease.target, exc)

    def shutdown(self) -> None:
        """Stop handing out work and wake everything that waits, so that it can end."""
        self.closed = True
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._reader.shutdown(wait=False, cancel_futures=True)
        self.dispatch.wake_all()
        for key in list(self._watchers):
            self._wake_watchers(*key)
