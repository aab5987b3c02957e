"""The due timer and time skipping: when delayed messages come due, and when the clock may jump.

One timer, for the earliest due time (not a wake-up of every stream). This module only
says when: the message layer above (``post.py``) awaits :meth:`Timekeeper.next_call` in
one task and makes due messages deliverable, so nothing here calls back up.

With time skipping on, the clock jumps to the next due time whenever nothing runs (no
work item is leased to a worker) and nothing can (none is ready).
"""

from __future__ import annotations

import asyncio
import logging

from .clock import Clock
from .dispatch import Dispatcher, resolve

log = logging.getLogger("dts_emulator")


class Timekeeper:
    def __init__(self, clock: Clock, dispatch: Dispatcher):
        self.clock = clock
        self._dispatch = dispatch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due_timer: asyncio.TimerHandle | None = None
        self._due_at: float | None = None
        self._rang = False  # the due timer fired
        self._skip_pending = False  # a look at whether the clock may jump was asked for
        self._woken: asyncio.Future | None = None
        self.closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start keeping time on the engine's loop."""
        self._loop = loop
        self.arm()
        self.consider_skipping()

    def schedule(self, hub: str, kind: str, key: str, at: float) -> None:
        self._dispatch.schedule(hub, kind, key, at)
        self.arm()
        self.consider_skipping()

    def arm(self) -> None:
        """Set the timer for the earliest due time, unless it is set for that or earlier."""
        due = self._dispatch.next_due()
        if self._loop is None or self.closed or due is None or (self._due_at is not None and self._due_at <= due):
            return
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_at = due
        self._due_timer = self._loop.call_later(max(due - self.clock.now(), 0.0), self._ring)

    def rearm(self) -> None:
        """The clock moved: the due timer's wall-clock delay is wrong now."""
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_timer = self._due_at = None
        self.arm()

    def _ring(self) -> None:
        self._due_timer = self._due_at = None
        self._rang = True
        resolve(self._woken)

    def consider_skipping(self) -> None:
        """With time skipping on, look (once the current change is over) whether the clock may jump.

        Called where the engine may have become idle: a lease ended, a due time was added,
        skipping was turned on. One jump per look, so other work runs between jumps.
        """
        if self.clock.skipping and self._loop is not None and not self._skip_pending and not self.closed:
            self._skip_pending = True
            resolve(self._woken)

    async def next_call(self) -> tuple[bool, bool]:
        """Wait until the due timer fires or a look at skipping is asked for: (fired, look)."""
        while not (self._rang or self._skip_pending or self.closed):
            self._woken = asyncio.get_running_loop().create_future()
            await self._woken
        rang, look = self._rang, self._skip_pending
        self._rang = self._skip_pending = False
        return rang, look

    def due(self) -> list[tuple[str, str, str]]:
        """The targets whose due time has come, taken off the timetable."""
        return self._dispatch.pop_due(self.clock.now())

    def jump(self) -> bool:
        """With time skipping on, move the clock to the next due time if nothing runs and nothing can.

        Returns whether there is a due time to move to (what came due is the caller's to deliver).
        """
        dispatch = self._dispatch
        if not self.clock.skipping or dispatch.leases_held() or dispatch.any_ready():
            return False
        due = dispatch.next_due()
        if due is None:
            return False
        if due > self.clock.now():
            log.debug("time skipping: %.3f s ahead to the next due time", due - self.clock.now())
            self.clock.advance_to(due)
        return True

    def close(self) -> None:
        self.closed = True
        if self._due_timer is not None:
            self._due_timer.cancel()
        resolve(self._woken)
