"""What a worker's filters match a target by: its orchestration, activity or entity name.

Looked up once, when a target becomes ready (see ``dispatch.py``); from the store, as
the target's own records say.
"""

from __future__ import annotations

from durabletask.internal import orchestrator_service_pb2 as pb

from .store import ACTIVITY, ORCHESTRATION, Store
from .validation import entity_name

Name = tuple[str, "str | None"]  # (name, version)


class Names:
    def __init__(self, store: Store):
        self._store = store

    def of(self, hub: str, kind: str, target: str) -> Name:
        if kind == ORCHESTRATION:
            row = self._store.peek_instance(hub, target)
            return (row.name, row.version) if row is not None else ("", None)
        if kind == ACTIVITY:
            message = self._store.get_message(int(target))
            if message is None:
                return "", None
            request = pb.ActivityRequest.FromString(message.payload)
            return request.name, request.version.value if request.HasField("version") else None
        return entity_name(target), None
