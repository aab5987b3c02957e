"""Instances by status and entities, per hub, kept in memory so that no count scans a table.

Counted once when the store opens, then changed by every write and reversed with a
rolled-back transaction. Plain dicts of ints: another thread may read them (a copy
under the GIL); it may see a transaction's changes before that transaction commits.
"""

from __future__ import annotations

import sqlite3

from .transaction import UndoLog


class Counts:
    def __init__(self, undo: UndoLog, db: sqlite3.Connection):
        self._undo = undo
        self._statuses: dict[str, dict[int, int]] = {}
        self._entities: dict[str, int] = {}
        for hub, status, n in db.execute("SELECT hub, status, count(*) FROM instances GROUP BY hub, status"):
            self._statuses.setdefault(hub, {})[status] = n
        for hub, n in db.execute("SELECT hub, count(*) FROM entities GROUP BY hub"):
            self._entities[hub] = n

    def instance_changed(self, hub: str, old_status: int | None, new_status: int | None) -> None:
        """An instance went from ``old_status`` to ``new_status`` (None: no row)."""
        if old_status == new_status:
            return
        self._move(hub, old_status, new_status)
        self._undo.remember(lambda: self._move(hub, new_status, old_status))

    def _move(self, hub: str, src: int | None, dst: int | None) -> None:
        counts = self._statuses.setdefault(hub, {})
        if src is not None:
            left = counts.get(src, 0) - 1
            if left > 0:
                counts[src] = left
            else:
                counts.pop(src, None)
        if dst is not None:
            counts[dst] = counts.get(dst, 0) + 1

    def entity_changed(self, hub: str, existed: bool, exists: bool) -> None:
        if existed == exists:
            return
        delta = 1 if exists else -1
        self._add_entities(hub, delta)
        self._undo.remember(lambda: self._add_entities(hub, -delta))

    def _add_entities(self, hub: str, delta: int) -> None:
        self._entities[hub] = self._entities.get(hub, 0) + delta

    def drop_hub(self, hub: str) -> None:
        statuses = self._statuses.pop(hub, None)
        entities = self._entities.pop(hub, None)
        self._undo.remember(lambda: self._restore(hub, statuses, entities))

    def _restore(self, hub: str, statuses: dict[int, int] | None, entities: int | None) -> None:
        if statuses is not None:
            self._statuses[hub] = statuses
        if entities is not None:
            self._entities[hub] = entities

    def by_status(self, hub: str) -> dict[int, int]:
        return self._statuses.get(hub, {}).copy()

    def entities(self, hub: str) -> int:
        return self._entities.get(hub, 0)
