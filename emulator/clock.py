"""The emulator's time: the wall clock, moved forward when a test skips time.

Each emulator has a clock of its own (its backend owns it), so several emulators in
one process keep separate times. It is passed to every part of the engine that stamps
(never found through the thread): every stamp the engine makes (history, due times,
scheduled starts, entity ``last_modified``) is on this clock, whichever thread runs it. Waits that a
client asks for keep wall-clock deadlines; they use the event loop's own time.
"""

from __future__ import annotations

import math
import time

# The latest moment the engine can stamp: what a datetime and a protobuf Timestamp hold (9999-12-31 23:59:59 UTC).
LATEST = 253_402_300_799


class Clock:
    """Wall-clock time plus an offset that only grows while the emulator runs.

    ``skipping`` lets the engine jump to the next due time whenever nothing runs
    or can run (see ``Timekeeper.jump``); ``advance`` moves it on request.
    """

    def __init__(self, skipping: bool = False):
        self.skipping = skipping
        self._offset_ns = 0

    @property
    def skipped(self) -> float:
        """Seconds this clock is ahead of the wall clock."""
        return self._offset_ns / 1e9

    def now(self) -> float:
        return self.now_ns() / 1e9

    def now_ns(self) -> int:
        return time.time_ns() + self._offset_ns

    def advance(self, seconds: float) -> None:
        """Move forward; what the clock cannot hold is refused before anything moves."""
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"the emulator's clock only moves forward (asked to move {seconds} seconds)")
        if not math.isfinite(seconds) or self.now() + seconds > LATEST:
            raise ValueError(f"the emulator's clock goes up to 9999-12-31 23:59:59 UTC; moving it {seconds} seconds "
                             f"on from {self.now():.0f} s since 1970 would pass that (the clock is left unchanged)")
        self._offset_ns += round(seconds * 1e9)

    def advance_to(self, moment: float) -> None:
        """Move on to ``moment`` (seconds since the epoch) unless it has passed already."""
        self.advance(max(moment - self.now(), 0.0))

    def reset(self, skipping: bool = False) -> None:
        """Back to the wall clock (for an emptied emulator: nothing is stamped in its future)."""
        self._offset_ns = 0
        self.skipping = skipping
