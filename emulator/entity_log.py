"""What the entity operation log records: one row per applied operation, lock grant and release.

Called where a batch's result is applied (entities._apply) and where a lock is granted or
released (entities.pump), inside that transaction. Inputs, results and states are capped
at CAP characters, with their full size in bytes kept beside them, so one large state
cannot make the log large. The store keeps the rows (store/oplog.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev
from .backend import Backend

CAP = 1024
"""Characters of an input, result or state that the log keeps."""


def _capped(text: str | None) -> tuple[str | None, int]:
    if text is None:
        return None, 0
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (text if len(text) <= CAP else text[:CAP]), size


def sender_kind(sender: str | None) -> str:
    """Who sent a message to an entity: a client, an orchestration or (``@name@key``) an entity."""
    if sender is None:
        return "client"
    return "entity" if sender.startswith("@") else "orchestration"


def record_batch(backend: Backend, hub: str, entity_id: str, operations: Sequence, results: Sequence,
                 before: str | None, after: str | None) -> None:
    """A row per operation of an applied (or failed) batch; the states are the batch's."""
    if not backend.store.entity_log:
        return
    now = ev.now()
    state_before, _ = _capped(before)
    state_after, state_size = _capped(after)
    count = len(operations)
    entries = []
    for op, outcome in zip(operations, results, strict=False):
        text, input_size = _capped(op.input)
        if outcome.HasField("failure"):
            details: pb.TaskFailureDetails = outcome.failure.failureDetails
            failed, result, result_size = True, None, 0
            error_type, error_message = details.errorType, details.errorMessage[:CAP]
        else:
            failed, error_type, error_message = False, None, None
            result, result_size = _capped(ev.optional_string(outcome.success, "result"))
        entries.append((op.name, text, input_size, failed, result, result_size, error_type, error_message,
                        sender_kind(op.sender), op.sender, op.sent_at, now, state_before, state_after, state_size,
                        count))
    backend.store.log_operations(hub, entity_id, entries)


def record_lock(backend: Backend, hub: str, entity_id: str, owner: str, granted: bool, sent_at: float | None,
                state: str | None) -> None:
    """A lock granted to, or released by, an orchestration's critical section."""
    if not backend.store.entity_log:
        return
    text, size = _capped(state)
    backend.store.log_operations(hub, entity_id, [(
        "(lock granted)" if granted else "(lock released)", None, 0, False, None, 0, None, None,
        "lock", owner, sent_at, ev.now(), text, text, size, 1)])
