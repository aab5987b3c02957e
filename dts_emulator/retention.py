"""``--retention``: purge finished instances some time after they finished, as the hosted scheduler does.

A timer on the engine's loop, never part of a client's or a worker's change: every
``interval`` seconds it looks (on the store's reader, off the write path) for up to
``batch`` instances that ended more than ``period`` ago and purges them in one short
transaction. A full batch means more may wait: the next one follows as soon as the
loop has run what queued meanwhile, so a large backlog drains without a long stall.
"""

from __future__ import annotations

import asyncio
import logging
import re

from . import control
from . import events as ev
from .backend import STORAGE_ERRORS, Backend

log = logging.getLogger("dts_emulator.retention")

DEFAULT_INTERVAL = 60.0
DEFAULT_BATCH = 500
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h`` or ``7d`` as seconds; ValueError with the reason otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"'{text}' is not a duration: a positive number with s, m, h or d (e.g. 7d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class Retention:
    """Purges finished instances older than ``period`` seconds, in every hub the engine serves."""

    def __init__(self, backend: Backend, period: float, interval: float = DEFAULT_INTERVAL,
                 batch: int = DEFAULT_BATCH):
        self.backend, self.period, self.interval, self.batch = backend, period, interval, batch
        self.purged = 0  # since start, for the health report and the logs
        self.rounds = 0  # timer rounds finished (tests wait on it)
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._later(self.interval)

    def stop(self) -> None:
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _later(self, delay: float) -> None:
        if self._loop is not None and not self.backend.closed:
            self._timer = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._task = self._loop.create_task(self._round())

    async def _round(self) -> None:
        try:
            full = await self.run_once() >= self.batch
        except STORAGE_ERRORS as exc:  # the disk is full: try again next interval, nothing is lost
            self.backend.storage_failed(exc)
            full = False
        except Exception:
            log.exception("purging finished instances failed; trying again in %.0f s", self.interval)
            full = False
        self._task = None
        self.rounds += 1
        self._later(0 if full else self.interval)

    async def run_once(self) -> int:
        """Purge at most ``batch`` instances that ended before now - period; returns how many."""
        cutoff = self.backend.clock.now() - self.period
        left, deleted = self.batch, 0
        for hub in list(self.backend.hubs):
            ids = await self.backend.read(lambda reads, hub=hub, left=left: [
                row.instance_id for row in reads.query_instances(
                    hub, statuses=sorted(ev.TERMINAL), completed_to=cutoff, limit=left)])
            if ids and hub in self.backend.hubs:
                deleted += control.purge(self.backend, hub, ids, recursive=False)
            left = self.batch - deleted
            if left <= 0:
                break
        if deleted:
            self.purged += deleted
            log.info("purged %d instance(s) that finished more than %.0f s ago", deleted, self.period)
        return deleted
