"""Who gets which work item: ready queues, leases and due times, in memory.

Nothing here is durable: the store holds the messages, and this module only
remembers which targets have deliverable work, which are leased to which worker
stream, and when delayed messages come due. After a restart it is rebuilt from
the store, so a lease that never completed simply becomes ready again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .names import Name, Names
from .store import ENTITY

Key = tuple[str, str, str]  # (hub, kind, target)

# For how long (seconds) the dispatcher remembers when an entity was last leased: an entity leased
# that recently receives a stream of operations, and its next batch may gather (see workitems.py).
ENTITY_RECENT = 0.1


@dataclass
class Lease:
    token: str
    hub: str
    kind: str
    target: str
    stream: int
    data: Any = None
    started: float = field(default_factory=time.monotonic)


def resolve(woken: asyncio.Future | None) -> None:
    """Wake a sleeping stream (once: it may have timed out or been cancelled already)."""
    if woken is not None and not woken.done():
        woken.set_result(None)


@dataclass(order=True)
class _Due:
    at: float
    key: Key = field(compare=False)


class Dispatcher:
    """Ready targets per (hub, kind) with their names, leases by token, and a heap of due times.

    Used from the engine's event loop only. An idle worker stream sleeps on a future of its
    own and says what it wants (its filters, and room under its concurrency limit): new work
    wakes only the streams that want it, and a filtered stream matches names kept here,
    never the store.
    """

    def __init__(self, names: Names, remember: dict[str, float] | None = None):
        """``remember``: for how long (seconds) to remember when a target of a kind was last leased."""
        self._names = names
        self._remember = {ENTITY: ENTITY_RECENT} if remember is None else dict(remember)
        # hub -> idle stream -> (its wake-up, what it wants)
        self._sleepers: dict[str, dict[int, tuple[asyncio.Future, Callable[[str, str, Name], bool]]]] = {}
        self._ready: dict[tuple[str, str], OrderedDict[str, Name]] = {}
        self._ready_since: dict[Key, float] = {}  # when each ready target became ready
        self._leases: dict[str, Lease] = {}
        self._leased: dict[Key, Lease] = {}
        self._streams: dict[int, set[str]] = {}
        # (stream, kind) -> its leases outstanding, oldest first
        self._held: dict[tuple[int, str], dict[str, Lease]] = {}
        self._due: list[_Due] = []
        # kind -> when each target was last leased, oldest first, for as long as ``remember`` says
        self._last_leased: dict[str, OrderedDict[tuple[str, str], float]] = {}
        self._stream_ids = itertools.count(1)
        self.streams_opened = 0
        # Tokens must never repeat, also across restarts: a random prefix per run.
        self._token_prefix = uuid.uuid4().hex[:12]
        self._token_numbers = itertools.count(1)

    # -- readiness --------------------------------------------------------------

    def mark_ready(self, hub: str, kind: str, target: str) -> None:
        """The target has deliverable messages; leased targets wait for release."""
        if (hub, kind, target) in self._leased:
            return
        queue = self._ready.setdefault((hub, kind), OrderedDict())
        if target in queue:
            return  # already ready: whoever wants it was woken then
        name = queue[target] = self._names.of(hub, kind, target)
        self._ready_since[(hub, kind, target)] = time.monotonic()
        sleepers = self._sleepers.get(hub)
        if sleepers:
            for stream in [s for s, (_, wants) in sleepers.items() if wants(kind, target, name)]:
                resolve(sleepers.pop(stream)[0])

    def any_ready(self) -> bool:
        """Whether any target of any hub waits for a worker."""
        return any(self._ready.values())

    def is_ready(self, hub: str, kind: str, target: str) -> bool:
        return target in self._ready.get((hub, kind), ())

    def unready(self, hub: str, kind: str, target: str) -> None:
        self._ready.get((hub, kind), OrderedDict()).pop(target, None)
        self._ready_since.pop((hub, kind, target), None)

    def ready_since(self, hub: str, kind: str, target: str) -> float:
        """When the ready target became ready (monotonic seconds)."""
        return self._ready_since[(hub, kind, target)]

    def ready_in_order(self, hub: str, kind: str) -> Iterator[tuple[str, Name, float]]:
        """The ready targets of ``kind`` with their names and since when, longest ready first."""
        for target, name in self._ready.get((hub, kind), {}).items():
            yield target, name, self._ready_since[(hub, kind, target)]

    def schedule(self, hub: str, kind: str, target: str, at: float) -> None:
        """Make the target ready at ``at`` (the backend's due timer promotes it)."""
        heapq.heappush(self._due, _Due(at, (hub, kind, target)))

    def pop_due(self, now: float) -> list[Key]:
        keys = []
        while self._due and self._due[0].at <= now:
            keys.append(heapq.heappop(self._due).key)
        return keys

    def next_due(self) -> float | None:
        return self._due[0].at if self._due else None

    def take(self, hub: str, kind: str, accept: Callable[[str, Name], bool] | None = None) -> str | None:
        """Remove and return the first ready target of ``kind`` that ``accept(target, name)`` likes (None: any)."""
        queue = self._ready.get((hub, kind))
        if not queue:
            return None
        if accept is None:
            found = next(iter(queue))
        else:
            found = next((target for target, name in queue.items() if accept(target, name)), None)
        if found is not None:
            del queue[found]
            del self._ready_since[(hub, kind, found)]
        return found

    # -- sleeping streams ----------------------------------------------------------

    def sleep(self, hub: str, stream: int, wants: Callable[[str, str, Name], bool]) -> asyncio.Future:
        """A future resolved when work the stream ``wants`` (kind, target, name) becomes ready, or it may take more.

        A bare future (not an Event behind ``asyncio.wait_for``, which costs a task per
        sleep): streams sleep and wake for every work item.
        """
        woken = asyncio.get_running_loop().create_future()
        self._sleepers.setdefault(hub, {})[stream] = (woken, wants)
        return woken

    def sleeping(self) -> int:
        """How many idle worker streams wait for work."""
        return sum(len(sleepers) for sleepers in self._sleepers.values())

    def wake_hub(self, hub: str) -> None:
        for woken, _ in self._sleepers.pop(hub, {}).values():
            resolve(woken)

    def wake_stream(self, hub: str, stream: int) -> None:
        sleeper = self._sleepers.get(hub, {}).pop(stream, None)
        if sleeper is not None:
            resolve(sleeper[0])

    def wake_all(self) -> None:
        for hub in list(self._sleepers):
            self.wake_hub(hub)

    # -- leases -----------------------------------------------------------------

    def open_stream(self) -> int:
        stream = next(self._stream_ids)
        self.streams_opened = stream
        self._streams[stream] = set()
        return stream

    def open_streams(self) -> int:
        return len(self._streams)

    def leases_held(self) -> int:
        return len(self._leases)

    def held(self, stream: int, kind: str) -> int:
        return len(self._held.get((stream, kind), ()))

    def newest(self, stream: int, kind: str) -> Lease | None:
        """The stream's most recently leased work item of ``kind`` that it still holds."""
        held = self._held.get((stream, kind))
        return held[next(reversed(held))] if held else None

    def is_open(self, stream: int) -> bool:
        return stream in self._streams

    def lease(self, hub: str, kind: str, target: str, stream: int, data: Any) -> Lease:
        lease = Lease(f"{self._token_prefix}-{next(self._token_numbers)}", hub, kind, target, stream, data)
        self._leases[lease.token] = lease
        self._leased[(hub, kind, target)] = lease
        self._streams.setdefault(stream, set()).add(lease.token)
        self._held.setdefault((stream, kind), {})[lease.token] = lease
        if kind in self._remember:
            recent = self._last_leased.setdefault(kind, OrderedDict())
            recent[(hub, target)] = lease.started
            recent.move_to_end((hub, target))
            horizon = lease.started - self._remember[kind]
            while next(iter(recent.values())) < horizon:
                recent.popitem(last=False)
        return lease

    def leased_lately(self, hub: str, kind: str, target: str) -> bool:
        """Whether the target was leased within the time remembered for its kind."""
        at = self._last_leased.get(kind, {}).get((hub, target))
        return at is not None and time.monotonic() - at < self._remember[kind]

    def is_leased(self, hub: str, kind: str, target: str) -> bool:
        return (hub, kind, target) in self._leased

    def release(self, token: str) -> Lease | None:
        """End a lease (completed or abandoned); the caller re-checks readiness."""
        lease = self._leases.pop(token, None)
        if lease is None:
            return None
        self._leased.pop((lease.hub, lease.kind, lease.target), None)
        self._streams.get(lease.stream, set()).discard(token)
        held = self._held.get((lease.stream, lease.kind))
        if held is not None:
            held.pop(token, None)
            if not held:
                del self._held[(lease.stream, lease.kind)]
        self.wake_stream(lease.hub, lease.stream)  # at its concurrency limit, it may take more now
        return lease

    def close_stream(self, stream: int) -> list[Lease]:
        """Release every lease the stream held, for the next worker to take."""
        tokens = self._streams.pop(stream, set())
        for sleepers in self._sleepers.values():
            sleeper = sleepers.pop(stream, None)
            if sleeper is not None:
                resolve(sleeper[0])  # its feeder wakes up and sees the stream closed
        return [lease for token in tokens if (lease := self.release(token)) is not None]

    def clear_hub(self, hub: str) -> None:
        for key in [k for k in self._ready if k[0] == hub]:
            del self._ready[key]
        for key in [k for k in self._ready_since if k[0] == hub]:
            del self._ready_since[key]
        for recent in self._last_leased.values():
            for key in [k for k in recent if k[0] == hub]:
                del recent[key]
        for lease in [lease for lease in self._leases.values() if lease.hub == hub]:
            self.release(lease.token)
        self._due = [d for d in self._due if d.key[0] != hub]
        heapq.heapify(self._due)
