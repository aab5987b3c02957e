"""The engine: its parts built and wired together, and the few calls its users make.

Each concern is a module of its own, below this one, and each part is given the
lower parts it uses (never a function from above):

  transactions.py  one atomic change, with effects after the commit
  inbox.py         entity inboxes: lock messages handled without a worker
  post.py          sending messages; targets deliverable now or when due
  timekeeping.py   the due timer and time skipping
  backoff.py       failures counted per target; retries.py: retry, requeue or give up
  endings.py       how work items end, also for good
  instances.py     instance records, creation and end
  waiters.py       clients waiting on instances
  streams.py       worker streams and their leases
  reading.py       read-only queries off the engine's path

The kinds of work (``orchestrations.py``, ``activities.py``, ``entities.py``,
``control.py``) use these parts through the attributes of :class:`Backend`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from . import clock as clocks
from .backoff import FIRST_RETRY_SECONDS, MAX_ATTEMPTS, Backoff
from .dispatch import Dispatcher, Lease
from .endings import Endings
from .errors import STORAGE_ERRORS, OverLimit, Refused, ShuttingDown, StaleWorkItem
from .inbox import Inboxes
from .instances import Instances
from .names import Names
from .post import Post
from .reading import Reader
from .retries import Retries
from .store import ENTITY, EntityRow, InstanceRow, MessageRow, Store
from .streams import Streams
from .timekeeping import Timekeeper
from .transactions import Transactions
from .validation import MAX_MESSAGE_BYTES
from .waiters import Waiters

__all__ = ["FIRST_RETRY_SECONDS", "MAX_ATTEMPTS", "STORAGE_ERRORS", "Backend", "OverLimit", "Refused",
           "ShuttingDown", "StaleWorkItem"]
T = TypeVar("T")


class Backend:
    def __init__(self, store: Store, hubs: list[str], entity_state_limit: int = 1024 * 1024,
                 max_waiters: int = 10_000, max_streams: int = 1_000, max_message_bytes: int = MAX_MESSAGE_BYTES):
        self.store = store  # for tests and diagnostics: the engine's parts are given what they use
        self.hubs = list(hubs)
        self.entity_state_limit = entity_state_limit
        self.max_message_bytes = max_message_bytes  # the largest work item a worker is sent
        self.clock = clocks.Clock()  # this emulator's time (see clock.py), passed to every part that stamps
        self.dispatch = Dispatcher(Names(store))
        self.transactions = Transactions(store)
        self.timekeeper = Timekeeper(self.clock, self.dispatch)
        self.backoff = Backoff(store)
        self.inboxes = Inboxes(store, self.dispatch, self.transactions, self.clock)
        self.post = Post(store, self.dispatch, self.transactions, self.timekeeper, self.inboxes, self.backoff,
                         self.clock)
        self.waiters = Waiters(store, self.transactions, max_waiters)
        self.instances = Instances(store, self.transactions, self.post, self.waiters, self.inboxes, self.clock)
        self.endings = Endings(self.instances, self.post, self.inboxes, self.clock)
        self.streams = Streams(self.dispatch, self.timekeeper, max_streams)
        self.retries = Retries(self.streams, self.post, self.backoff, self.endings, self.transactions)
        self.reader = Reader(store)
        self._keeping_time: asyncio.Task | None = None
        self.closed = False
        self.post.recover()

    # -- what the kinds of work and the service call ------------------------------------

    def tx(self):
        """One atomic change (see transactions.py)."""
        return self.transactions.tx()

    def create_instance(self, hub: str, instance_id: str, name: str, **options) -> InstanceRow:
        return self.instances.create(hub, instance_id, name, **options)

    def finish_instance(self, row: InstanceRow) -> None:
        self.instances.finish(row)

    def notify_changed(self, hub: str, instance_id: str) -> None:
        self.waiters.changed(hub, instance_id)

    async def wait_for(self, hub: str, instance_id: str, predicate: Callable[[InstanceRow], bool],
                       timeout: float | None) -> InstanceRow | None:
        return await self.waiters.wait_for(hub, instance_id, predicate, timeout)

    @property
    def waiting(self) -> int:
        return self.waiters.waiting

    @property
    def watched(self) -> int:
        return self.waiters.watched

    def open_stream(self) -> int:
        return self.streams.open()

    def close_stream(self, stream: int) -> None:
        self.retries.stream_ended(stream)

    def stream_closed(self, stream: int) -> bool:
        return self.streams.is_closed(stream)

    def release(self, token: str) -> Lease:
        return self.streams.release(token)

    def abandon(self, token: str) -> None:
        self.retries.abandon(token)

    def fail_work(self, lease: Lease, reason: str) -> None:
        self.retries.fail_work(lease, reason)

    def storage_failed(self, error: BaseException) -> None:
        self.backoff.storage_failed(error)

    @property
    def storage_error(self) -> tuple[str, int] | None:
        """The last storage error, and how many writes had committed then (health.py: refused since?)."""
        return self.backoff.storage_error

    def promote_due(self) -> None:
        self.post.promote_due()

    # -- reads ----------------------------------------------------------------------------

    def instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        """The instance as the engine has it (from memory when cached); for reading only."""
        return self.instances.peek(hub, instance_id)

    def entity(self, hub: str, entity_id: str) -> EntityRow | None:
        return self.store.get_entity(hub, entity_id)

    def history(self, hub: str, instance_id: str) -> list[bytes]:
        return self.instances.history(hub, instance_id)

    def queued(self, hub: str, entity_id: str) -> list[MessageRow]:
        """The messages waiting in an entity's inbox, in arrival order."""
        return self.post.queued(hub, ENTITY, entity_id)

    def backlog(self, hub: str, entity_id: str) -> int:
        return self.store.count_messages(hub, ENTITY, entity_id)

    async def read(self, query: Callable[[Any], T]) -> T:
        return await self.reader.read(query)

    async def offload(self, work: Callable[[], T]) -> T:
        return await self.reader.offload(work)

    # -- running, time, and starting afresh -----------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start keeping time on the engine's loop: delayed messages become ready when due."""
        self.timekeeper.attach(loop)
        self._keeping_time = loop.create_task(self.post.keep_time(), name="emulator-timekeeping")

    def set_time_skipping(self, on: bool) -> None:
        self.clock.skipping = bool(on)
        self.timekeeper.consider_skipping()

    def advance_clock(self, seconds: float) -> None:
        """Move the clock forward (a test asked to): what came due becomes ready now."""
        self.clock.advance(seconds)
        self.post.promote_due()
        self.timekeeper.rearm()
        self.timekeeper.consider_skipping()

    def delete_hub(self, hub: str) -> None:
        with self.tx():
            self.store.delete_hub(hub)
        self.dispatch.clear_hub(hub)
        self.waiters.wake_hub(hub)

    def reset(self, time_skipping: bool = False) -> None:
        """Empty every task hub and go back to the wall clock: a fresh emulator for the next test."""
        for hub in self.hubs:
            self.delete_hub(hub)
        self.backoff.clear()
        self.clock.reset(time_skipping)
        self.timekeeper.rearm()

    def shutdown(self) -> None:
        """Stop handing out work and wake everything that waits, so that it can end."""
        self.closed = True
        self.timekeeper.close()
        if self._keeping_time is not None:
            self._keeping_time.cancel()
        self.reader.shutdown()
        self.streams.close_all()
        self.waiters.close()
