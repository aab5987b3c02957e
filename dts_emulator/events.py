"""Small builders for protobuf history events and times, shared by the emulator."""

from __future__ import annotations

import uuid

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import timestamp_pb2, wrappers_pb2

TERMINAL = frozenset(
    {
        pb.ORCHESTRATION_STATUS_COMPLETED,
        pb.ORCHESTRATION_STATUS_FAILED,
        pb.ORCHESTRATION_STATUS_TERMINATED,
        pb.ORCHESTRATION_STATUS_CANCELED,
    }
)


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    _stamp(ts, seconds)
    return ts


def _stamp(ts: timestamp_pb2.Timestamp, seconds: float) -> None:
    """Set ``ts`` in place: no message to copy."""
    ts.seconds, ts.nanos = divmod(int(seconds * 1e9), 1_000_000_000)


def seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def optional_seconds(message, field: str) -> float | None:
    return seconds(getattr(message, field)) if message.HasField(field) else None


def string(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def optional_string(message, field: str) -> str | None:
    return getattr(message, field).value if message.HasField(field) else None


def event(event_id: int = -1, *, at: float, **kind) -> pb.HistoryEvent:
    """A history event of one kind stamped ``at``, e.g. ``event(timerFired=pb.TimerFiredEvent(...), at=now)``.

    The time is always given: the engine passes its own clock's (see ``clock.py``), never a default.
    """
    e = pb.HistoryEvent(eventId=event_id, **kind)
    _stamp(e.timestamp, at)
    return e


def parse(blob: bytes) -> pb.HistoryEvent:
    e = pb.HistoryEvent()
    e.ParseFromString(blob)
    return e


def kind_of(e: pb.HistoryEvent) -> str:
    return e.WhichOneof("eventType") or "unknown"


def failure(message: str, error_type: str = "EmulatorError") -> pb.TaskFailureDetails:
    return pb.TaskFailureDetails(errorType=error_type, errorMessage=message, isNonRetriable=True)


def new_id() -> str:
    return uuid.uuid4().hex
