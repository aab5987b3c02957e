"""What the entity operation log records: one row per applied operation, lock grant and release.

Pure formatting: the rows are written by the engine's parts that apply a batch's result
(``endings.answer_operations``) and handle locks (``inbox.Inboxes``), in that transaction;
the store keeps them (store/oplog.py). Inputs, results and states are capped at CAP
characters, with their full size in bytes kept beside them, so one large state cannot make
the log large.
"""

from __future__ import annotations

from collections.abc import Sequence

from durabletask.internal import orchestrator_service_pb2 as pb

from . import events as ev

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


def batch_entries(operations: Sequence, results: Sequence[pb.OperationResult], before: str | None,
                  after: str | None, now: float) -> list[tuple]:
    """A row per operation of an applied (or failed) batch (``entities.Operation``s); the states are the batch's."""
    state_before, _ = _capped(before)
    state_after, state_size = _capped(after)
    entries = []
    for op, outcome in zip(operations, results, strict=False):
        text, input_size = _capped(op.input)
        if outcome.HasField("failure"):
            details = outcome.failure.failureDetails
            failed, result, result_size = True, None, 0
            error_type, error_message = details.errorType, details.errorMessage[:CAP]
        else:
            failed, error_type, error_message = False, None, None
            result, result_size = _capped(ev.optional_string(outcome.success, "result"))
        entries.append((op.name, text, input_size, failed, result, result_size, error_type, error_message,
                        sender_kind(op.sender), op.sender, op.sent_at, now, state_before, state_after, state_size,
                        len(operations)))
    return entries


def lock_entry(owner: str, granted: bool, sent_at: float | None, state: str | None, now: float) -> tuple:
    """A lock granted to, or released by, an orchestration's critical section."""
    text, size = _capped(state)
    return ("(lock granted)" if granted else "(lock released)", None, 0, False, None, 0, None, None,
            "lock", owner, sent_at, now, text, text, size, 1)
