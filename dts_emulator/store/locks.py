"""Which entities each orchestration holds locked, so that ending one that holds none costs no query."""

from __future__ import annotations

from collections.abc import Iterable

from .transaction import UndoLog


class LockIndex:
    def __init__(self, undo: UndoLog, held: Iterable[tuple[str, str, str]] = ()):
        """``held``: (hub, entity ID, owner) for every locked entity on disk."""
        self._undo = undo
        self._held: dict[tuple[str, str], set[str]] = {}
        for hub, entity_id, owner in held:
            self._held.setdefault((hub, owner), set()).add(entity_id)

    def move(self, hub: str, entity_id: str, old_owner: str | None, owner: str | None) -> None:
        if old_owner == owner:
            return
        self._move(hub, entity_id, old_owner, owner)
        self._undo.remember(lambda: self._move(hub, entity_id, owner, old_owner))

    def _move(self, hub: str, entity_id: str, src: str | None, dst: str | None) -> None:
        if src is not None:
            held = self._held.get((hub, src), set())
            held.discard(entity_id)
            if not held:
                self._held.pop((hub, src), None)
        if dst is not None:
            self._held.setdefault((hub, dst), set()).add(entity_id)

    def held_by(self, hub: str, owner: str) -> list[str]:
        return sorted(self._held.get((hub, owner), ()))

    def drop_hub(self, hub: str) -> None:
        for key in [k for k in self._held if k[0] == hub]:
            held = self._held.pop(key)
            self._undo.remember(lambda k=key, v=held: self._held.__setitem__(k, v))
