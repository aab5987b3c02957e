"""Bounded read caches whose changes inside a transaction are undone with it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from .transaction import UndoLog

ABSENT = object()


class Cache:
    """Least recently set first out. Keys are tuples that start with the hub.

    An eviction is never undone: a missing entry is read from SQLite again.
    """

    def __init__(self, limit: int, undo: UndoLog):
        self.limit = limit
        self._undo = undo
        self._entries: OrderedDict = OrderedDict()

    def get(self, key: Hashable, default=ABSENT):
        return self._entries.get(key, default)

    def set(self, key: Hashable, value) -> None:
        entries = self._entries
        old = entries.get(key, ABSENT)
        self._undo.remember(lambda: entries.pop(key, None) if old is ABSENT else entries.__setitem__(key, old))
        entries[key] = value
        entries.move_to_end(key)
        while len(entries) > self.limit:
            entries.popitem(last=False)

    def drop_hub(self, hub: str) -> None:
        entries = self._entries
        for key in [k for k in entries if k[0] == hub]:
            old = entries.pop(key)
            self._undo.remember(lambda k=key, v=old: entries.__setitem__(k, v))

    def __len__(self) -> int:
        return len(self._entries)
