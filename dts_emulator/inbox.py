"""Entity inboxes: their rows, and the lock messages handled without a worker.

An entity's messages wait in its inbox in arrival order. While an orchestration holds
the entity's lock, only that orchestration's messages are delivered; the rest wait.
Lock requests and releases are handled here, in the order they arrive: a lock request
travels through its sorted lock set one entity at a time (which rules out deadlocks),
and the last entity to grant it tells the orchestration. :meth:`Inboxes.pump` returns
those messages for the layer above (``post.py``) to send: nothing here calls back up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from durabletask.internal import orchestrator_service_pb2 as pb

from . import entity_log
from . import events as ev
from .clock import Clock
from .dispatch import Dispatcher
from .store import ENTITY, ORCHESTRATION, EntityRow, MessageRow, Store
from .transactions import Transactions

log = logging.getLogger("dts_emulator.entities")

OPERATIONS = ("entityOperationSignaled", "entityOperationCalled")


class Outgoing(NamedTuple):
    """A message a lock request sends on: to the next entity of its set, or the grant to its orchestration."""

    kind: str  # ENTITY or ORCHESTRATION
    target: str
    event: pb.HistoryEvent
    sender: str | None


def deliverable(row: EntityRow, messages: Iterable[MessageRow]) -> Iterator[tuple[MessageRow, pb.HistoryEvent]]:
    """The messages the entity may see now (all, or only the lock holder's), parsed as they are needed."""
    return ((m, ev.parse(m.payload)) for m in messages if row.lock_owner is None or m.sender == row.lock_owner)


class Inboxes:
    def __init__(self, store: Store, dispatch: Dispatcher, transactions: Transactions, clock: Clock):
        self._store = store
        self._dispatch = dispatch
        self._transactions = transactions
        self._clock = clock

    def row(self, hub: str, entity_id: str) -> EntityRow:
        """The entity's row, or a new one (not stored until it is put)."""
        return self._store.get_entity(hub, entity_id) or EntityRow(hub, entity_id, None, self._clock.now(), None,
                                                                   None)

    def put(self, row: EntityRow) -> None:
        self._store.put_entity(row)

    def log_batch(self, row: EntityRow, before: str | None, operations: list, results: list) -> None:
        """The operation log's rows for a batch applied to ``row`` (see entity_log.py)."""
        if self._store.entity_log:
            self._store.log_operations(row.hub, row.instance_id, entity_log.batch_entries(
                operations, results, before, row.state, self._clock.now()))

    def _log_lock(self, row: EntityRow, owner: str, granted: bool, sent_at: float | None) -> None:
        if self._store.entity_log:
            self._store.log_operations(row.hub, row.instance_id, [entity_log.lock_entry(
                owner, granted, sent_at, row.state, self._clock.now())])

    def locked(self, hub: str) -> list[EntityRow]:
        return self._store.query_entities(hub, locked_only=True)

    def pump(self, hub: str, entity_id: str) -> list[Outgoing]:
        """Apply leading lock messages, then mark the entity ready if an operation waits.

        Returns the lock messages to send on (in the same transaction).
        """
        outgoing: list[Outgoing] = []
        if self._dispatch.is_leased(hub, ENTITY, entity_id):
            return outgoing
        store, dispatch = self._store, self._dispatch
        row = self.row(hub, entity_id)
        messages = store.messages_for(hub, ENTITY, entity_id, visible_by=self._clock.now())
        while True:
            first = next(deliverable(row, messages), None)
            if first is None:
                self._transactions.after_commit(lambda: dispatch.unready(hub, ENTITY, entity_id))
                return outgoing
            message, e = first
            kind = ev.kind_of(e)
            if kind in OPERATIONS:
                self._transactions.after_commit(lambda: dispatch.mark_ready(hub, ENTITY, entity_id))
                return outgoing
            messages.remove(message)
            store.delete_messages([message.id])
            if kind == "entityLockRequested":
                if not self._running(hub, e.entityLockRequested.parentInstanceId.value):
                    # Its orchestration ended (or was purged) while the request waited: granting it
                    # would lock the entity for no one, forever.
                    log.info("entity %s: dropping the lock request of %s, which is no longer running", entity_id,
                             e.entityLockRequested.parentInstanceId.value)
                    continue
                if row.lock_owner is not None:
                    # The holder asked again for a lock it holds: grant it once more.
                    log.warning("entity %s: lock requested again by its holder %s", entity_id, row.lock_owner)
                outgoing.append(self._grant(row, e.entityLockRequested))
                self._log_lock(row, row.lock_owner, True, ev.seconds(e.timestamp))
            elif kind == "entityUnlockSent":
                if row.critical_section == e.entityUnlockSent.criticalSectionId:
                    owner, row.lock_owner, row.critical_section = row.lock_owner, None, None
                    row.last_modified = self._clock.now()
                    store.put_entity(row)
                    self._log_lock(row, owner, False, ev.seconds(e.timestamp))
            else:
                log.warning("entity %s: dropping unexpected message %s", entity_id, kind)

    def _running(self, hub: str, instance_id: str) -> bool:
        row = self._store.peek_instance(hub, instance_id)
        return row is not None and row.status not in ev.TERMINAL

    def _grant(self, row: EntityRow, request: pb.EntityLockRequestedEvent) -> Outgoing:
        owner = request.parentInstanceId.value
        row.lock_owner, row.critical_section = owner, request.criticalSectionId
        row.last_modified = moment = self._clock.now()
        self._store.put_entity(row)
        following = request.position + 1
        if following < len(request.lockSet):
            forwarded = pb.EntityLockRequestedEvent()
            forwarded.CopyFrom(request)
            forwarded.position = following
            return Outgoing(ENTITY, request.lockSet[following], ev.event(entityLockRequested=forwarded, at=moment),
                            owner)
        granted = pb.EntityLockGrantedEvent(criticalSectionId=request.criticalSectionId)
        return Outgoing(ORCHESTRATION, owner, ev.event(entityLockGranted=granted, at=moment), None)

    def release_locks_of(self, hub: str, owner: str) -> list[str]:
        """Free every entity an ended (or vanished) orchestration still holds; returns their IDs."""
        released = []
        for row in self._store.entities_locked_by(hub, owner):
            row.lock_owner = row.critical_section = None
            row.last_modified = self._clock.now()
            self._store.put_entity(row)
            self._log_lock(row, owner, False, None)
            released.append(row.instance_id)
        return released

    def withdraw_requests_of(self, hub: str, owner: str) -> list[str]:
        """Delete the lock requests an ended orchestration still has waiting; returns the entities they waited at.

        A request travels its lock set one entity at a time, so it waits in one inbox at most
        (behind another holder): with it gone, nothing grants that entity to an ended instance.
        """
        withdrawn = []
        for message in self._store.messages_sent_by(hub, ENTITY, owner):
            e = ev.parse(message.payload)
            if e.HasField("entityLockRequested") and e.entityLockRequested.parentInstanceId.value == owner:
                self._store.delete_messages([message.id])
                withdrawn.append(message.target)
        return withdrawn
