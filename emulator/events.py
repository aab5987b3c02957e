"""Small builders for protobuf history events and times, shared by the emulator."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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


# The clock of the emulator whose engine runs on this thread (see ``clock.py``); the
# wall clock where none is bound (tools and tests that use the engine directly).
_bound = threading.local()


def bind_clock(clock) -> None:
    """Make ``clock`` the time of everything the engine does on this thread."""
    _bound.clock = clock


@contextmanager
def clock_bound(clock) -> Iterator[None]:
    """``clock`` for the duration of a block (the engine built on another thread)."""
    previous = getattr(_bound, "clock", None)
    _bound.clock = clock
    try:
        yield
    finally:
        _bound.clock = previous


def now() -> float:
    return _now_ns() / 1e9


def _now_ns() -> int:
    clock = getattr(_bound, "clock", None)
    return time.time_ns() if clock is None else clock.now_ns()


def timestamp(seconds: float | None = None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    _stamp(ts, seconds)
    return ts


def _stamp(ts: timestamp_pb2.Timestamp, seconds: float | None) -> None:
    """Set ``ts`` in place (to now when ``seconds`` is None): no message to copy."""
    nanos = _now_ns() if seconds is None else int(seconds * 1e9)
    ts.seconds, ts.nanos = divmod(nanos, 1_000_000_000)


def seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def optional_seconds(message, field: str) -> float | None:
    return seconds(getattr(message, field)) if message.HasField(field) else None


def string(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def optional_string(message, field: str) -> str | None:
    return getattr(message, field).value if message.HasField(field) else None


def event(event_id: int = -1, at: float | None = None, **kind) -> pb.HistoryEvent:
    """A history event of one kind, e.g. ``event(timerFired=pb.TimerFiredEvent(...))``."""
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
