"""The Store: one SQLite database shared by all task hubs (rows carry their hub), and its memory.

Everything the emulator acknowledges lives here, so that a restart (even after ``kill -9``)
finds instances, histories, entity states and pending messages as they were. Callers group
writes with :meth:`Store.transaction`; one completion is one transaction. History events and
message payloads are opaque bytes.

Reads on the hot path come from memory: pending messages are mirrored in full
(``messages.py``), instance rows, entity rows and histories are cached up to a fixed size
(``caches.py``), locks are indexed by owner (``locks.py``) and hub counts are kept
(``counts.py``). Writes wait in the transaction and reach SQLite as few statements when it
commits (``writes.py``), over the connection that ``database.py`` opens. Memory never runs
ahead of the disk: whatever makes a transaction fail, its memory changes are undone
(``transaction.py``); a failed write raises :class:`StorageError`. The dashboard and query
calls read through :meth:`Store.reads`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import oplog, queries
from .caches import ABSENT, Cache
from .counts import Counts
from .database import Connect, Database
from .datafile import unusable
from .errors import DataFileError, DataInUse, SchemaError
from .locks import LockIndex
from .messages import MessageMirror
from .reads import Reads
from .rows import (
    ACTIVITY,
    INSTANCE_COLUMNS,
    MESSAGE_COLUMNS,
    ORCHESTRATION,
    EntityRow,
    InstanceRow,
    MessageRow,
    copy_entity,
    copy_instance,
    instance_from,
    instance_values,
)
from .schema import version_of
from .transaction import Transaction, UndoLog

# Bounds of the read caches (entries); the message mirror is bounded by pending work.
CACHED_ROWS = 20_000
CACHED_HISTORIES = 2_000
# Payload bytes each cache may hold besides (inputs, outputs, states, history events): past
# it, the least recently used go, and are read from SQLite when asked for again.
CACHED_BYTES = 8 * 1024 * 1024


def _instance_bytes(row) -> int:
    if row is None:
        return 0
    return sum(len(v) for v in (row.input, row.output, row.custom_status, row.failure) if v)


def _entity_bytes(row) -> int:
    return len(row.state) if row is not None and row.state else 0


def _history_bytes(events) -> int:
    return sum(len(e) for e in events)

# An upsert updates the row in place, so the created_at index is left alone.
_UPSERT_INSTANCE = (
    f"INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ({', '.join('?' * len(INSTANCE_COLUMNS.split(',')))}) "
    "ON CONFLICT (hub, instance_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in INSTANCE_COLUMNS.split(",")[2:])
)


class Store:
    def __init__(self, path: str | Path | None, connect: Connect = sqlite3.connect):
        """Open ``path``, or a private in-memory database when it is None.

        ``connect`` opens the writing connection (``sqlite3.connect``'s signature): a seam
        for tests that make SQLite fail. Raises DataInUse, SchemaError or DataFileError.
        """
        self.path = None if path is None else Path(path)
        self.entity_log = oplog.DEFAULT_LIMIT  # operations kept per entity; 0: none are logged
        self._lock = threading.RLock()
        self._undo = UndoLog()
        self._file: Database | None = None
        self._readers: list[Reads] = []
        try:
            self._open(connect)
        except (DataInUse, SchemaError, DataFileError):
            self._close_all()
            raise
        except (OSError, sqlite3.Error) as exc:
            self._close_all()
            raise unusable(self.path, exc) from exc
        except BaseException:
            self._close_all()
            raise

    def _open(self, connect: Connect) -> None:
        file = self._file = Database(self.path, connect, self._lock)
        db, self._db, self._writer = file.db, file.db, file.writer
        self._instances = Cache(CACHED_ROWS, self._undo, CACHED_BYTES, _instance_bytes)
        self._entities = Cache(CACHED_ROWS, self._undo, CACHED_BYTES, _entity_bytes)
        self._histories = Cache(CACHED_HISTORIES, self._undo, CACHED_BYTES, _history_bytes)
        used = db.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = 'messages'").fetchone()[0]
        self._messages = MessageMirror(
            self._undo, (MessageRow(*r) for r in db.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY id")),
            used or 0)
        self._locks = LockIndex(
            self._undo, db.execute("SELECT hub, instance_id, lock_owner FROM entities WHERE lock_owner IS NOT NULL"))
        self._counts = Counts(self._undo, db)
        self._op_seq = db.execute(oplog.LAST_SEQ).fetchone()[0] or 0

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def _close_all(self) -> None:
        """Close readers, then the data file (which lets go of the file last, see claim.py)."""
        try:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        finally:
            if self._file is not None:
                self._file.close()

    def schema_version(self) -> int:
        with self._lock:
            return version_of(self._db)

    def data_file_gone(self) -> str | None:
        """Asked by the health report, so that a probe sees a deleted or replaced file before a write does."""
        return self._file.gone()

    @property
    def writes_committed(self) -> int:
        """How many writing transactions committed so far: a later one shows the disk takes writes again."""
        return self._writer.commits

    def reads(self) -> Reads:
        """A reader for the dashboard and query calls; see reads.py for which thread may use it."""
        with self._lock:
            reader = Reads(self)
            self._readers.append(reader)
            return reader

    # -- transactions -----------------------------------------------------------

    def transaction(self) -> Transaction:
        """Group writes atomically; nested uses join the outer transaction.

        A failed commit raises StorageError; memory and disk are then as before the transaction.
        """
        return Transaction(self)

    def _rows(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._writer.send()  # a read sees the transaction's own writes
            cur = self._db.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    # -- instances --------------------------------------------------------------

    def get_instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        """A copy of the instance's row (callers change it, then put it back)."""
        row = self.peek_instance(hub, instance_id)
        return None if row is None else copy_instance(row)

    def peek_instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        """The instance's row itself, for reading only: cheaper than a copy."""
        with self._lock:
            row = self._instances.get((hub, instance_id))
            if row is ABSENT:
                rows = self._rows(queries.GET_INSTANCE, (hub, instance_id))
                row = instance_from(rows[0]) if rows else None
                self._instances.set((hub, instance_id), row)
            return row

    def add_instance(self, row: InstanceRow) -> None:
        """Store a new instance (none with its ID exists): it has no history yet, so none is read."""
        with self.transaction():
            self.put_instance(row)
            self._histories.set((row.hub, row.instance_id), ())

    def put_instance(self, row: InstanceRow) -> None:
        with self.transaction():
            old = self.peek_instance(row.hub, row.instance_id)
            self._writer.add(_UPSERT_INSTANCE, "", [instance_values(row)])
            self._counts.instance_changed(row.hub, None if old is None else old.status, row.status)
            self._instances.set((row.hub, row.instance_id), copy_instance(row))

    def delete_instance(self, hub: str, instance_id: str) -> None:
        with self.transaction():
            old = self.peek_instance(hub, instance_id)
            self._writer.add("DELETE FROM instances WHERE hub = ? AND instance_id = ?", "", [(hub, instance_id)])
            self._counts.instance_changed(hub, None if old is None else old.status, None)
            self._instances.set((hub, instance_id), None)
            self.clear_history(hub, instance_id)
            self._writer.add(oplog.DELETE_START, "", [(hub, instance_id)])
            for kind in (ORCHESTRATION, ACTIVITY):
                self.delete_messages([m.id for m in self.messages_for(hub, kind, instance_id)])

    def query_instances(self, hub: str, **filters) -> list[InstanceRow]:
        """See queries.query_instances for the filters (``search`` covers the newest SEARCH_WINDOW instances)."""
        return queries.query_instances(self._rows, hub, **filters)

    def count_instances_by_status(self, hub: str) -> dict[int, int]:
        """{status: instances}, kept in memory: no scan."""
        return self._counts.by_status(hub)

    # -- history ----------------------------------------------------------------

    def history(self, hub: str, instance_id: str) -> list[bytes]:
        with self._lock:
            events = self._histories.get((hub, instance_id))
            if events is ABSENT:
                events = tuple(r[0] for r in self._rows(queries.HISTORY, (hub, instance_id)))
                self._histories.set((hub, instance_id), events)
            return list(events)

    def append_history(self, hub: str, instance_id: str, events: Sequence[bytes]) -> None:
        with self.transaction():
            before = self.history(hub, instance_id)
            self._writer.add(
                "INSERT INTO history (hub, instance_id, seq, event) VALUES {}", "(?, ?, ?, ?)",
                [(hub, instance_id, len(before) + i, e) for i, e in enumerate(events)],
            )
            self._histories.set((hub, instance_id), (*before, *events))

    def clear_history(self, hub: str, instance_id: str) -> None:
        with self.transaction():
            self._writer.add("DELETE FROM history WHERE hub = ? AND instance_id = ?", "", [(hub, instance_id)])
            self._histories.set((hub, instance_id), ())

    # -- messages ---------------------------------------------------------------

    def add_message(
        self,
        hub: str,
        kind: str,
        target: str,
        payload: bytes,
        visible_at: float,
        sender: str | None = None,
        execution_id: str | None = None,
    ) -> int:
        with self.transaction():
            message = MessageRow(self._messages.next_id(), hub, kind, target, execution_id, sender, visible_at, payload)
            self._writer.add(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {{}}", "(?, ?, ?, ?, ?, ?, ?, ?)",
                [(message.id, hub, kind, target, execution_id, sender, visible_at, payload)],
            )
            self._messages.add(message)
            return message.id

    def iter_messages(self, hub: str, kind: str, target: str, visible_by: float | None = None) -> Iterator[MessageRow]:
        """The target's messages in arrival order (a snapshot, safe to change the inbox while iterating)."""
        with self._lock:
            messages = self._messages.inbox(hub, kind, target)
        for m in messages:
            if visible_by is None or m.visible_at <= visible_by:
                yield m

    def messages_for(self, hub: str, kind: str, target: str, visible_by: float | None = None) -> list[MessageRow]:
        return list(self.iter_messages(hub, kind, target, visible_by))

    def messages_sent_by(self, hub: str, kind: str, sender: str) -> list[MessageRow]:
        """The ``kind`` messages ``sender`` sent that still wait (from the mirror: no scan)."""
        with self._lock:
            return self._messages.sent_by(hub, kind, sender)

    def get_message(self, message_id: int) -> MessageRow | None:
        with self._lock:
            return self._messages.get(message_id)

    def delete_messages(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self.transaction():
            self._writer.add("DELETE FROM messages WHERE id IN ({})", "?", [(i,) for i in ids])
            for message_id in ids:
                self._messages.remove(message_id)

    def pending_targets(self) -> list[tuple[str, str, str, float]]:
        """(hub, kind, target, earliest visible_at) for every target with messages."""
        with self._lock:
            return self._messages.targets()

    def activity_messages(self) -> list[MessageRow]:
        with self._lock:
            return self._messages.activities()

    def count_messages(self, hub: str, kind: str, target: str) -> int:
        """From the mirror, without the store's lock (one dict lookup): safe from a reader's thread."""
        return self._messages.count(hub, kind, target)

    # -- entities ---------------------------------------------------------------

    def get_entity(self, hub: str, instance_id: str) -> EntityRow | None:
        row = self._peek_entity(hub, instance_id)
        return None if row is None else copy_entity(row)

    def _peek_entity(self, hub: str, instance_id: str) -> EntityRow | None:
        with self._lock:
            row = self._entities.get((hub, instance_id))
            if row is ABSENT:
                rows = self._rows(queries.GET_ENTITY, (hub, instance_id))
                row = EntityRow(*rows[0]) if rows else None
                self._entities.set((hub, instance_id), row)
            return row

    def locks_held_by(self, hub: str, owner: str) -> list[str]:
        with self._lock:
            return self._locks.held_by(hub, owner)

    def put_entity(self, row: EntityRow) -> None:
        """Store the entity, or drop its row when it has neither state nor lock."""
        key = (row.hub, row.instance_id)
        with self.transaction():
            old = self._peek_entity(*key)
            self._locks.move(row.hub, row.instance_id, old.lock_owner if old else None, row.lock_owner)
            keep = row.state is not None or row.lock_owner is not None
            self._counts.entity_changed(row.hub, old is not None, keep)
            if not keep:
                self._writer.add("DELETE FROM entities WHERE hub = ? AND instance_id = ?", "", [key])
                if old is not None:
                    self._writer.add(oplog.DELETE, "", [key])  # the log goes with the entity
                self._entities.set(key, None)
                return
            self._writer.add(
                "INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?, ?)", "",
                [(row.hub, row.instance_id, row.state, row.last_modified, row.lock_owner, row.critical_section)],
            )
            self._entities.set(key, copy_entity(row))

    def log_operations(self, hub: str, entity_id: str, entries: Sequence[tuple]) -> None:
        """Add rows to the entity's operation log (see oplog.py) and drop what exceeds its bound.

        ``entries`` hold OperationRow's fields after ``seq``. An entity without a row (no
        state, no lock) keeps no log: there is nothing to keep it with.
        """
        limit = self.entity_log
        if not limit or not entries:
            return
        with self.transaction():
            if self._peek_entity(hub, entity_id) is None:
                return
            entries = entries[-limit:]
            first = self._op_seq + 1
            self._op_seq += len(entries)  # not undone: a gap in the numbers is harmless
            self._writer.add(oplog.INSERT, oplog.PLACEHOLDER,
                             [(hub, entity_id, first + i, *e) for i, e in enumerate(entries)])
            self._writer.add(oplog.TRIM, "", [(hub, entity_id, limit)])

    def note_started_by(self, hub: str, instance_id: str, entity_id: str) -> None:
        """Remember that an entity started the instance (kept until the instance is deleted)."""
        with self.transaction():
            self._writer.add(oplog.ADD_START, "", [(hub, instance_id, entity_id)])

    def query_entities(self, hub: str, **filters) -> list[EntityRow]:
        """See queries.query_entities for the filters."""
        return queries.query_entities(self._rows, hub, **filters)

    def entities_locked_by(self, hub: str, owner: str) -> list[EntityRow]:
        return [row for entity_id in self.locks_held_by(hub, owner) if (row := self.get_entity(hub, entity_id))]

    def count_entities(self, hub: str) -> int:
        """Kept in memory: no scan."""
        return self._counts.entities(hub)

    def delete_hub(self, hub: str) -> None:
        with self.transaction():
            for table in ("instances", "history", "messages", "entities", "entity_ops", "entity_starts"):
                self._writer.add(f"DELETE FROM {table} WHERE hub = ?", "", [(hub,)])
            self._locks.drop_hub(hub)
            for cache in (self._instances, self._entities, self._histories):
                cache.drop_hub(hub)
            self._messages.drop_hub(hub)
            self._counts.drop_hub(hub)
