"""Bounded read caches whose changes inside a transaction are undone with it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

from .transaction import UndoLog

ABSENT = object()


class Cache:
    """Least recently set first out, bounded by entries and by the bytes of their payloads.

    Keys are tuples that start with the hub. An eviction is never undone: a missing
    entry is read from SQLite again. The byte bound keeps large inputs, outputs and
    histories on disk only, once they are there.
    """

    def __init__(self, limit: int, undo: UndoLog, max_bytes: int | None = None,
                 size: Callable[[object], int] | None = None):
        self.limit = limit
        self._undo = undo
        self._entries: OrderedDict = OrderedDict()
        self._max_bytes = max_bytes
        self._size = size or (lambda value: 0)
        self.bytes = 0

    def get(self, key: Hashable, default=ABSENT):
        return self._entries.get(key, default)

    def set(self, key: Hashable, value) -> None:
        old = self._entries.get(key, ABSENT)
        self._undo.remember(lambda: self._put(key, old))
        self._put(key, value)
        entries = self._entries
        while len(entries) > self.limit or (self._max_bytes is not None and self.bytes > self._max_bytes):
            _, evicted = entries.popitem(last=False)
            self.bytes -= self._size(evicted)

    def _put(self, key: Hashable, value) -> None:
        """Set (or, with ABSENT, remove) one entry, keeping the byte count."""
        old = self._entries.pop(key, ABSENT)
        if old is not ABSENT:
            self.bytes -= self._size(old)
        if value is not ABSENT:
            self._entries[key] = value
            self.bytes += self._size(value)

    def drop_hub(self, hub: str) -> None:
        for key in [k for k in self._entries if k[0] == hub]:
            old = self._entries[key]
            self._put(key, ABSENT)
            self._undo.remember(lambda k=key, v=old: self._put(k, v))

    def __len__(self) -> int:
        return len(self._entries)
