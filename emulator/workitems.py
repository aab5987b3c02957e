"""Feeding one worker stream: pick the next work item its filters accept, or wait."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from durabletask.internal import orchestrator_service_pb2 as pb

from . import activities, entities, orchestrations
from .backend import Backend
from .dispatch import resolve
from .names import Name
from .store import ACTIVITY, ENTITY, ORCHESTRATION

_BUILDERS = {
    ORCHESTRATION: orchestrations.build,
    ACTIVITY: activities.build,
    ENTITY: entities.build,
}


@dataclass
class Filters:
    """A worker's work-item filters: the names it serves.

    None means the worker sent no filters (it serves everything); once it sends
    filters, an empty list for a kind means it serves nothing of that kind.
    """

    orchestrations: dict[str, set[str]] | None = None
    activities: dict[str, set[str]] | None = None
    entities: set[str] | None = None

    def accepts(self, kind: str, name: Name) -> bool:
        """Whether the worker serves work of this kind and (name, version)."""
        if kind == ORCHESTRATION:
            return _versioned_match(self.orchestrations, *name)
        if kind == ACTIVITY:
            return _versioned_match(self.activities, *name)
        return self.entities is None or name[0] in self.entities

    @property
    def serves_everything(self) -> bool:
        return self.orchestrations is None and self.activities is None and self.entities is None

    @classmethod
    def from_request(cls, request: pb.GetWorkItemsRequest) -> Filters:
        if not request.HasField("workItemFilters"):
            return cls()
        f = request.workItemFilters
        orchestrations: dict[str, set[str]] = {}
        for o in f.orchestrations:
            orchestrations.setdefault(o.name, set()).update(o.versions)
        activities: dict[str, set[str]] = {}
        for a in f.activities:
            activities.setdefault(a.name, set()).update(a.versions)
        return cls(orchestrations, activities, {e.name.lower() for e in f.entities})


def _versioned_match(rules: dict[str, set[str]] | None, name: str, version: str | None) -> bool:
    if rules is None:
        return True
    versions = rules.get(name)
    return versions is not None and (not versions or (version or "") in versions)


# Work items of a kind a stream is sent at once when its worker names no limit for that kind
# (SDK 1.12 names none for entities). Above the SDK's thread pool (cores + 4), so a lone worker
# never waits; low enough that a second worker gets a share of a backlog instead of none.
UNSTATED_LIMIT = 32


# Entity batches gather while the worker is busy. An entity that was sent a batch less than
# ENTITY_RECENT seconds ago (it receives a stream of operations) is held back, GATHER_WINDOW
# seconds at most after it became ready, from a stream that holds an entity batch sent less than
# GATHER_WINDOW seconds ago: operations that arrive meanwhile join its next batch, each batch one
# round trip and one commit. An entity at rest is sent at once. (dispatch.py remembers entity
# leases for ENTITY_RECENT.)
GATHER_WINDOW = 0.02


def limits_from_request(request: pb.GetWorkItemsRequest) -> dict[str, int]:
    """How many work items of each kind the worker takes at once."""
    return {
        ORCHESTRATION: request.maxConcurrentOrchestrationWorkItems or UNSTATED_LIMIT,
        ACTIVITY: request.maxConcurrentActivityWorkItems or UNSTATED_LIMIT,
        ENTITY: request.maxConcurrentEntityWorkItems or UNSTATED_LIMIT,
    }


class Feeder:
    """One worker stream's view of the dispatcher, taking kinds in turn.

    A worker that says how many work items it takes at once is not sent more, so
    that competing workers share the load instead of one hoarding it.
    """

    def __init__(self, backend: Backend, hub: str, stream: int, filters: Filters,
                 limits: dict[str, int] | None = None):
        self.backend, self.hub, self.stream, self.filters = backend, hub, stream, filters
        self.limits = limits or {}
        self._turn = 0

    def _has_room(self, kind: str) -> bool:
        limit = self.limits.get(kind, 0)
        return not limit or self.backend.streams.held(self.stream, kind) < limit

    def _gathering_until(self) -> float:
        """Until when recent entities are held back from this stream (a time past: they are not)."""
        newest = self.backend.streams.newest(self.stream, ENTITY)
        return newest.started + GATHER_WINDOW if newest is not None else 0.0

    def _may_send(self, kind: str, target: str, now: float, gathering: bool) -> bool:
        """Not an entity held back to gather operations (see GATHER_WINDOW)."""
        if kind != ENTITY or not gathering:
            return True
        streams = self.backend.streams
        return (not streams.leased_lately(self.hub, kind, target)
                or streams.ready_since(self.hub, kind, target) + GATHER_WINDOW <= now)

    def _next_change(self) -> float | None:
        """While entities are held back from this stream, when the next of them may be sent."""
        now = time.monotonic()
        until = self._gathering_until()
        if until <= now:
            return None
        for _, name, since in self.backend.streams.ready_in_order(self.hub, ENTITY):
            if since + GATHER_WINDOW >= until:
                break  # ready since later still: gathering ends first
            if since + GATHER_WINDOW > now and self._accepts(ENTITY, name):
                return since + GATHER_WINDOW
        return until

    def _accepts(self, kind: str, name: Name) -> bool:
        return self.filters.accepts(kind, name)

    def _wants(self, kind: str, target: str, name: Name) -> bool:
        """What wakes this stream while it sleeps: work it serves and may be sent, with room to take it."""
        if not (self._accepts(kind, name) and self._has_room(kind)):
            return False
        now = time.monotonic()
        return self._may_send(kind, target, now, kind == ENTITY and self._gathering_until() > now)

    def take(self) -> pb.WorkItem | None:
        """The next work item this stream may have now, or None."""
        backend = self.backend
        backend.post.promote_due()
        for i in range(3):
            kind = (ORCHESTRATION, ACTIVITY, ENTITY)[(self._turn + i) % 3]
            if not self._has_room(kind):
                continue
            now = time.monotonic()
            gathering = kind == ENTITY and self._gathering_until() > now
            accept = None
            if not self.filters.serves_everything or gathering:
                def accept(target: str, name: Name, kind: str = kind, now: float = now,
                           gathering: bool = gathering) -> bool:
                    return self._accepts(kind, name) and self._may_send(kind, target, now, gathering)
            while (key := backend.streams.take(self.hub, kind, accept)):
                item = _BUILDERS[kind](backend, self.hub, key, self.stream)
                if item is not None:
                    self._turn = (self._turn + i + 1) % 3
                    return item
        return None

    async def next(self, timeout: float) -> pb.WorkItem | None:
        """The next work item, or None after ``timeout`` seconds idle or when closed.

        While idle it sleeps until work it serves becomes ready (delayed messages too: the
        backend's due timer makes them ready) or it may take more (a lease ends, or an
        entity's gathering ends): no polling, no thread.
        """
        backend = self.backend
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not backend.streams.is_closed(self.stream):
            item = self.take()
            if item is not None:
                return item
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            woken = backend.streams.sleep(self.hub, self.stream, self._wants)
            change = self._next_change()
            if change is not None:
                remaining = min(remaining, change - time.monotonic())
            timer = loop.call_later(remaining, resolve, woken)
            try:
                await woken
            finally:
                timer.cancel()
        return None
