"""Messages: sending them, and making their targets deliverable now or when they come due.

A message is stored in the change that sends it; its target becomes ready after the
commit (an orchestration or activity) or has its inbox examined before it (an entity,
see ``inbox.py``). A message for later goes on the timetable (``timekeeping.py``);
:meth:`Post.keep_time` delivers it when it comes due, and when the clock jumps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backoff import Backoff
from .clock import Clock
from .dispatch import Dispatcher
from .errors import STORAGE_ERRORS
from .inbox import Inboxes
from .store import ACTIVITY, ENTITY, ORCHESTRATION, MessageRow, Store
from .timekeeping import Timekeeper
from .transactions import Transactions

log = logging.getLogger("dts_emulator")


class Post:
    def __init__(self, store: Store, dispatch: Dispatcher, transactions: Transactions, timekeeper: Timekeeper,
                 inboxes: Inboxes, backoff: Backoff, clock: Clock):
        self._store = store
        self._dispatch = dispatch
        self._transactions = transactions
        self._timekeeper = timekeeper
        self._inboxes = inboxes
        self._backoff = backoff
        self._clock = clock

    # -- sending --------------------------------------------------------------------

    def send(self, hub: str, kind: str, target: str, payload: bytes, visible_at: float | None = None,
             sender: str | None = None, execution_id: str | None = None) -> int:
        now = self._clock.now()
        at = now if visible_at is None else visible_at
        message_id = self._store.add_message(hub, kind, target, payload, at, sender, execution_id)
        key = str(message_id) if kind == ACTIVITY else target
        if at > now:
            self._transactions.after_commit(lambda: self._timekeeper.schedule(hub, kind, key, at))
        else:
            self.wake(hub, kind, key)
        return message_id

    def send_to_instance(self, hub: str, instance_id: str, e: pb.HistoryEvent, execution_id: str | None = None,
                         visible_at: float | None = None) -> None:
        """Deliver an event to an orchestration, dropping it if the instance has ended."""
        row = self._store.peek_instance(hub, instance_id)
        if row is None or row.status in ev.TERMINAL:
            log.debug("dropping %s for %s: instance missing or finished", ev.kind_of(e), instance_id)
            return
        if execution_id is not None and execution_id != row.execution_id:
            return
        if row.status == pb.ORCHESTRATION_STATUS_PENDING and row.scheduled_start:
            # Nothing may overtake the start of an instance scheduled for later.
            visible_at = max(visible_at or 0.0, row.scheduled_start)
        self.send(hub, ORCHESTRATION, instance_id, e.SerializeToString(), visible_at, execution_id=execution_id)

    def wake(self, hub: str, kind: str, key: str) -> None:
        """Note that ``key`` may have deliverable work (inside a transaction)."""
        if kind == ENTITY:
            # A ready entity stays ready whatever queues up behind its first operation,
            # so only idle entities need their inbox examined (this keeps signals O(1)).
            dispatch = self._dispatch
            if not dispatch.is_leased(hub, kind, key) and not dispatch.is_ready(hub, kind, key):
                self._transactions.before_commit((hub, key), lambda: self._pump(hub, key))
        else:
            self._transactions.after_commit(lambda: self._dispatch.mark_ready(hub, kind, key))

    def _pump(self, hub: str, entity_id: str) -> None:
        for out in self._inboxes.pump(hub, entity_id):
            if out.kind == ENTITY:
                self.send(hub, ENTITY, out.target, out.event.SerializeToString(), sender=out.sender)
            else:
                self.send_to_instance(hub, out.target, out.event)

    def requeue(self, hub: str, kind: str, key: str) -> None:
        """Make the target ready again if it still has deliverable messages."""
        if kind == ACTIVITY:
            if self._store.get_message(int(key)) is not None:
                self.wake(hub, kind, key)
        elif self._store.messages_for(hub, kind, key, visible_by=self._clock.now()):
            self.wake(hub, kind, key)

    def retry_later(self, hub: str, kind: str, key: str, error: BaseException | None = None) -> None:
        """Give a target's work another go after a growing delay (its last attempt failed)."""
        delay = self._backoff.delay((hub, kind, key), error)
        self._timekeeper.schedule(hub, kind, key, self._clock.now() + delay)

    # -- reading and consuming ---------------------------------------------------------

    def visible(self, hub: str, kind: str, target: str) -> list[MessageRow]:
        """The target's messages that may be delivered now, in arrival order."""
        return self._store.messages_for(hub, kind, target, visible_by=self._clock.now())

    def iter_visible(self, hub: str, kind: str, target: str) -> Iterator[MessageRow]:
        """``visible``, read as it is consumed (a batch may stop early)."""
        return self._store.iter_messages(hub, kind, target, visible_by=self._clock.now())

    def queued(self, hub: str, kind: str, target: str) -> list[MessageRow]:
        """All the target's messages, also those for later."""
        return self._store.messages_for(hub, kind, target)

    def message(self, message_id: int) -> MessageRow | None:
        return self._store.get_message(message_id)

    def consume(self, message_ids: list[int]) -> None:
        """Delete delivered (or undeliverable) messages, in the current change."""
        self._store.delete_messages(message_ids)

    # -- due times ------------------------------------------------------------------------

    def promote_due(self) -> None:
        """Make the targets whose due time has come deliverable."""
        keys = self._timekeeper.due()
        if not keys:
            return
        try:
            with self._transactions.tx():
                for hub, kind, key in keys:
                    self.wake(hub, kind, key)
        except STORAGE_ERRORS as exc:  # an entity pump could not store its lock changes
            for hub, kind, key in keys:
                self.retry_later(hub, kind, key, exc)

    def skip_time(self) -> bool:
        """With time skipping on, jump to the next due time while nothing runs and nothing can."""
        if not self._timekeeper.jump():
            return False
        self.promote_due()
        self._timekeeper.rearm()
        return True

    async def keep_time(self) -> None:
        """Deliver what comes due, and let the clock jump when skipping: the engine's one timekeeping task."""
        timekeeper = self._timekeeper
        while not timekeeper.closed:
            fired, look = await timekeeper.next_call()
            if timekeeper.closed:
                return
            if fired:
                self.promote_due()
                timekeeper.arm()  # the next one (or this one again, if the wall clock lagged the loop's)
            if look and self.skip_time():
                timekeeper.consider_skipping()  # what came due may have been stale: maybe the next one

    def recover(self) -> None:
        """Rebuild ready queues and due times from the messages on disk."""
        moment = self._clock.now()
        dispatch = self._dispatch
        for hub, kind, target, earliest in self._store.pending_targets():
            if kind == ACTIVITY:
                continue
            if earliest <= moment:
                if kind == ENTITY:
                    self._transactions.before_commit((hub, target), lambda h=hub, t=target: self._pump(h, t))
                else:
                    dispatch.mark_ready(hub, kind, target)
            for m in self._store.messages_for(hub, kind, target):
                if m.visible_at > moment:
                    dispatch.schedule(hub, kind, target, m.visible_at)
        for m in self._store.activity_messages():
            dispatch.mark_ready(m.hub, ACTIVITY, str(m.id))
        with self._transactions.tx():
            pass  # runs the entity pumps queued above

