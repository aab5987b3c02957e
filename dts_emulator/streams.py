"""Worker streams and the work items leased to them, as the engine admits and ends them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from .dispatch import Dispatcher, Lease
from .errors import OverLimit, StaleWorkItem
from .names import Name
from .timekeeping import Timekeeper


class Streams:
    def __init__(self, dispatch: Dispatcher, timekeeper: Timekeeper, max_streams: int):
        self._dispatch = dispatch
        self._timekeeper = timekeeper
        self.max_streams = max_streams
        self.closed = False

    def open(self) -> int:
        if self._dispatch.open_streams() >= self.max_streams:
            raise OverLimit(
                f"{self.max_streams} worker streams are already connected, as many as the emulator admits; "
                "stop a worker or retry later")
        return self._dispatch.open_stream()

    def close(self, stream: int) -> list[Lease]:
        """A worker went away: the leases it held, released (the caller decides what becomes of their work)."""
        leases = self._dispatch.close_stream(stream)
        if leases:
            self._timekeeper.consider_skipping()
        return leases

    def is_closed(self, stream: int) -> bool:
        return self.closed or not self._dispatch.is_open(stream)

    def close_all(self) -> None:
        """Stop handing out work: every idle stream wakes and sees the emulator stopping."""
        self.closed = True
        self._dispatch.wake_all()

    def lease(self, hub: str, kind: str, target: str, stream: int, data: Any) -> Lease:
        return self._dispatch.lease(hub, kind, target, stream, data)

    def release(self, token: str) -> Lease:
        lease = self._dispatch.release(token)
        if lease is None:
            raise StaleWorkItem(
                f"work item '{token}' is not leased (it completed already, was abandoned, "
                "or was re-dispatched after its worker disconnected)"
            )
        self._timekeeper.consider_skipping()  # the last work running may have ended
        return lease

    # -- what a stream's feeder asks (see workitems.py) ---------------------------------------

    def take(self, hub: str, kind: str, accept: Callable[[str, Name], bool] | None = None) -> str | None:
        return self._dispatch.take(hub, kind, accept)

    def sleep(self, hub: str, stream: int, wants: Callable[[str, str, Name], bool]) -> asyncio.Future:
        return self._dispatch.sleep(hub, stream, wants)

    def held(self, stream: int, kind: str) -> int:
        return self._dispatch.held(stream, kind)

    def newest(self, stream: int, kind: str) -> Lease | None:
        return self._dispatch.newest(stream, kind)

    def leased_lately(self, hub: str, kind: str, target: str) -> bool:
        return self._dispatch.leased_lately(hub, kind, target)

    def ready_since(self, hub: str, kind: str, target: str) -> float:
        return self._dispatch.ready_since(hub, kind, target)

    def ready_in_order(self, hub: str, kind: str) -> Iterator[tuple[str, Name, float]]:
        return self._dispatch.ready_in_order(hub, kind)
