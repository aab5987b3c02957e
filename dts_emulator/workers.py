"""Which workers are connected, what they registered and hold, and which went away (the dashboard's workers view).

The service records a worker stream when it opens and when it ends; what a stream holds
comes from the dispatcher. Ended streams are kept, the newest ``GONE_KEPT`` only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from . import events as ev
from .clock import Clock
from .dispatch import Dispatcher
from .store import ACTIVITY, ENTITY, ORCHESTRATION
from .workitems import Filters

GONE_KEPT = 50


@dataclass
class Worker:
    stream: int
    hub: str
    worker_id: str
    filters: Filters
    connected_at: float
    last_item_at: float | None = None
    ended_at: float | None = None
    dropped_items: int = 0  # what it held when its stream ended (re-queued)
    kinds: dict[str, int] = field(default_factory=dict)


def _names(filters: Filters) -> dict | None:
    if filters.serves_everything:
        return None
    return {"orchestrations": sorted(filters.orchestrations or ()), "activities": sorted(filters.activities or ()),
            "entities": sorted(filters.entities or ())}


class Registry:
    def __init__(self, clock: Clock):
        self._clock = clock  # the emulator's (see clock.py)
        self.connected: dict[int, Worker] = {}
        self.gone: deque[Worker] = deque(maxlen=GONE_KEPT)

    def opened(self, stream: int, hub: str, worker_id: str, filters: Filters) -> None:
        self.connected[stream] = Worker(stream, hub, worker_id, filters, self._clock.now())

    def gave(self, stream: int) -> None:
        worker = self.connected.get(stream)
        if worker is not None:
            worker.last_item_at = self._clock.now()

    def closed(self, stream: int, held: int) -> None:
        worker = self.connected.pop(stream, None)
        if worker is not None:
            worker.ended_at, worker.dropped_items = self._clock.now(), held
            self.gone.appendleft(worker)

    def describe(self, hub: str, dispatch: Dispatcher) -> dict:
        def one(w: Worker, live: bool) -> dict:
            held = {kind: dispatch.held(w.stream, kind) for kind in (ORCHESTRATION, ACTIVITY, ENTITY)} if live else {}
            return {"stream": w.stream, "workerId": w.worker_id, "registered": _names(w.filters),
                    "holds": held, "connected": _iso(w.connected_at), "lastWorkItem": _iso(w.last_item_at),
                    "ended": _iso(w.ended_at), "requeuedAtEnd": w.dropped_items}
        return {"connected": [one(w, True) for w in self.connected.values() if w.hub == hub],
                "gone": [one(w, False) for w in self.gone if w.hub == hub]}


def _iso(seconds: float | None) -> str | None:
    return ev.timestamp(seconds).ToJsonString() if seconds is not None else None
