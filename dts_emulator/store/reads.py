"""The one read interface for the dashboard and the gRPC query calls, off the engine's path.

For a file-backed store a :class:`Reads` has its own SQLite connection (query-only). In WAL
mode it reads what was committed while the writer goes on writing: neither waits for the
other. It may be used from one thread other than the engine's (calls are serialized by its
own lock, never the store's). For an in-memory store there is no second connection to the
same database, so ``same_thread`` is True and it reads through the store itself: the caller
must then run it where it runs the engine.

Hub counts and an entity's queued messages come from the store's memory in both cases
(kept counts, see counts.py, and the message mirror), read without the store's lock.
Instance search covers the newest ``SEARCH_WINDOW`` instances of a hub (see queries.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from . import oplog, queries
from .queries import SEARCH_WINDOW
from .rows import MESSAGE_COLUMNS, EntityRow, InstanceRow, MessageRow, instance_from

if TYPE_CHECKING:
    from .store import Store

__all__ = ["Reads", "SEARCH_WINDOW"]


class Reads:
    def __init__(self, store: Store):
        self._store = store
        self.same_thread = store.path is None
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._depth = 0  # open snapshot() blocks
        if not self.same_thread:
            self._db = sqlite3.connect(str(store.path.resolve()), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA query_only = 1")

    def close(self) -> None:
        """Closed by Store.close(); closing it earlier would, off Linux, drop the file's claim (see claim.py)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the same committed state (one read transaction)."""
        with self._lock:
            if self._db is None or self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                self._db.execute("COMMIT")

    def _fetch(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            if self._db is None:
                raise RuntimeError("this reader is closed")
            cur = self._db.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    # -- instances --------------------------------------------------------------

    def get_instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        if self.same_thread:
            return self._store.get_instance(hub, instance_id)
        rows = self._fetch(queries.GET_INSTANCE, (hub, instance_id))
        return instance_from(rows[0]) if rows else None

    def query_instances(self, hub: str, **filters) -> list[InstanceRow]:
        """Store.query_instances' filters; ``search`` covers the newest SEARCH_WINDOW instances only."""
        if self.same_thread:
            return self._store.query_instances(hub, **filters)
        with self.snapshot():  # the search window and the page from one state
            return queries.query_instances(self._fetch, hub, **filters)

    def instance_histogram(self, hub: str, buckets: int, **filters) -> dict:
        """Starts and completions over time of the instances query_instances' filters match."""
        if self.same_thread:
            return queries.instance_histogram(self._store._rows, hub, buckets, **filters)
        with self.snapshot():
            return queries.instance_histogram(self._fetch, hub, buckets, **filters)

    def count_instances_by_status(self, hub: str) -> dict[int, int]:
        return self._store.count_instances_by_status(hub)

    def history(self, hub: str, instance_id: str) -> list[bytes]:
        if self.same_thread:
            return self._store.history(hub, instance_id)
        return [r[0] for r in self._fetch(queries.HISTORY, (hub, instance_id))]

    # -- entities ---------------------------------------------------------------

    def get_entity(self, hub: str, instance_id: str) -> EntityRow | None:
        if self.same_thread:
            return self._store.get_entity(hub, instance_id)
        rows = self._fetch(queries.GET_ENTITY, (hub, instance_id))
        return EntityRow(*rows[0]) if rows else None

    def query_entities(self, hub: str, **filters) -> list[EntityRow]:
        """Store.query_entities' filters."""
        if self.same_thread:
            return self._store.query_entities(hub, **filters)
        return queries.query_entities(self._fetch, hub, **filters)

    def count_entities(self, hub: str) -> int:
        return self._store.count_entities(hub)

    @property
    def operations_kept(self) -> int:
        """How many operations the log keeps per entity (0: the log is off)."""
        return self._store.entity_log

    def entity_operations(self, hub: str, entity_id: str, before: int | None, limit: int) -> list[oplog.OperationRow]:
        """The entity's operation log, newest first (see oplog.py)."""
        return oplog.page(self._any_fetch, hub, entity_id, before, limit)

    def started_by(self, hub: str, instance_id: str) -> str | None:
        """The entity that started the instance, if one did."""
        return oplog.started_by(self._any_fetch, hub, instance_id)

    def last_failures(self, hub: str, entity_ids: Sequence[str]) -> dict[str, float]:
        return oplog.last_failures(self._any_fetch, hub, entity_ids)

    def _any_fetch(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        """This reader's connection, or the store's own for an in-memory store."""
        return self._store._rows(sql, params) if self.same_thread else self._fetch(sql, params)

    # -- pending messages ---------------------------------------------------------

    def messages_for(self, hub: str, kind: str, target: str) -> list[MessageRow]:
        """The target's committed messages in arrival order (a scan of the pending messages, not an index)."""
        if self.same_thread:
            return self._store.messages_for(hub, kind, target)
        rows = self._fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE hub = ? AND kind = ? AND target = ? ORDER BY id",
            (hub, kind, target))
        return [MessageRow(*r) for r in rows]

    def count_messages(self, hub: str, kind: str, target: str) -> int:
        """From the store's message mirror, like the kept counts: a list page asks once per row."""
        return self._store.count_messages(hub, kind, target)
