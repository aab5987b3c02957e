"""Every pending message, mirrored in memory: the dispatcher reads its queues from here, never from SQLite.

The mirror is bounded by the work not yet done. Message IDs are handed out here, so that a
message is known before its row is written; like AUTOINCREMENT, never one that was used before,
even by a message since deleted. A rolled-back transaction gives its IDs back (its rows never
reached the disk, so the IDs were never used there).
"""

from __future__ import annotations

from collections.abc import Iterable

from .rows import ACTIVITY, MessageRow
from .transaction import UndoLog

Target = tuple[str, str, str]  # (hub, kind, target)
Sender = tuple[str, str, str]  # (hub, kind, sender): where a sender's messages wait


class MessageMirror:
    def __init__(self, undo: UndoLog, rows: Iterable[MessageRow], last_used_id: int):
        self._undo = undo
        self._inboxes: dict[Target, dict[int, MessageRow]] = {}
        self._keys: dict[int, Target] = {}
        # Messages by sender (an ended orchestration's lock requests are withdrawn through it).
        self._sent: dict[Sender, dict[int, None]] = {}
        for m in rows:
            self._mirror(m)
        self._next_id = max(last_used_id, max(self._keys, default=0)) + 1

    def next_id(self) -> int:
        message_id = self._next_id
        self._next_id += 1
        self._undo.remember(lambda: setattr(self, "_next_id", message_id))
        return message_id

    def add(self, message: MessageRow) -> None:
        self._mirror(message)
        self._undo.remember(lambda: self._unmirror(message.id))

    def remove(self, message_id: int) -> None:
        message = self._unmirror(message_id)
        if message is not None:
            self._undo.remember(lambda: self._mirror(message))

    def drop_hub(self, hub: str) -> None:
        for key in [k for k in self._inboxes if k[0] == hub]:
            for message_id in list(self._inboxes[key]):
                self.remove(message_id)

    def _mirror(self, m: MessageRow) -> None:
        key = (m.hub, m.kind, m.target)
        inbox = self._inboxes.setdefault(key, {})
        if inbox and next(reversed(inbox)) > m.id:  # restored by an undo: keep id order
            inbox = self._inboxes[key] = dict(sorted({**inbox, m.id: m}.items()))
        else:
            inbox[m.id] = m
        self._keys[m.id] = key
        if m.sender is not None:
            self._sent.setdefault((m.hub, m.kind, m.sender), {})[m.id] = None

    def _unmirror(self, message_id: int) -> MessageRow | None:
        key = self._keys.pop(message_id, None)
        if key is None:
            return None
        inbox = self._inboxes[key]
        message = inbox.pop(message_id)
        if not inbox:
            del self._inboxes[key]
        if message.sender is not None:
            sent_key = (message.hub, message.kind, message.sender)
            sent = self._sent[sent_key]
            del sent[message_id]
            if not sent:
                del self._sent[sent_key]
        return message

    def inbox(self, hub: str, kind: str, target: str) -> list[MessageRow]:
        """The target's messages in arrival order (a snapshot)."""
        return list(self._inboxes.get((hub, kind, target), {}).values())

    def sent_by(self, hub: str, kind: str, sender: str) -> list[MessageRow]:
        """The sender's messages of ``kind`` still waiting, wherever they wait, in arrival order."""
        return [self.get(i) for i in self._sent.get((hub, kind, sender), ())]

    def get(self, message_id: int) -> MessageRow | None:
        key = self._keys.get(message_id)
        return None if key is None else self._inboxes[key][message_id]

    def count(self, hub: str, kind: str, target: str) -> int:
        return len(self._inboxes.get((hub, kind, target), ()))

    def targets(self) -> list[tuple[str, str, str, float]]:
        """(hub, kind, target, earliest visible_at) for every target with messages."""
        return [(*key, min(m.visible_at for m in inbox.values())) for key, inbox in self._inboxes.items()]

    def activities(self) -> list[MessageRow]:
        found = [m for key, inbox in self._inboxes.items() if key[1] == ACTIVITY for m in inbox.values()]
        return sorted(found, key=lambda m: m.id)
