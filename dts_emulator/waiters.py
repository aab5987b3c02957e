"""Clients waiting on instances: one future per watched instance, resolved at its next change."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from .dispatch import resolve
from .errors import OverLimit, ShuttingDown
from .store import InstanceRow, Store
from .transactions import Transactions


class Waiters:
    def __init__(self, store: Store, transactions: Transactions, max_waiters: int):
        self._store = store
        self._transactions = transactions
        self.max_waiters = max_waiters
        # Instances clients wait on: a future resolved at the instance's next change, and how many wait.
        self._watchers: dict[tuple[str, str], asyncio.Future] = {}
        self._watching: Counter[tuple[str, str]] = Counter()
        self.waiting = 0
        self.closed = False

    @property
    def watched(self) -> int:
        """Instances that clients wait on (each holds one future until it changes or nobody waits)."""
        return len(self._watchers)

    def changed(self, hub: str, instance_id: str) -> None:
        """Wake the clients waiting on this instance, and only them (after the commit)."""
        if (hub, instance_id) in self._watchers:
            self._transactions.after_commit(lambda: self._wake(hub, instance_id))

    def _wake(self, hub: str, instance_id: str) -> None:
        resolve(self._watchers.pop((hub, instance_id), None))

    def wake_hub(self, hub: str) -> None:
        for key in [k for k in self._watchers if k[0] == hub]:
            self._wake(*key)

    def close(self) -> None:
        """Wake every waiter: each sees the emulator stopping."""
        self.closed = True
        for key in list(self._watchers):
            self._wake(*key)

    async def wait_for(self, hub: str, instance_id: str, predicate: Callable[[InstanceRow], bool],
                       timeout: float | None) -> InstanceRow | None:
        """Wait until the instance satisfies ``predicate``; None when it does not exist.

        Costs one awaiting coroutine, no thread; only changes to this instance wake it.
        """
        row = self._store.peek_instance(hub, instance_id)
        if row is None or predicate(row):
            return row  # no wait at all, so no limit applies
        if self.waiting >= self.max_waiters:
            raise OverLimit(
                f"{self.waiting} clients are already waiting on instances; the emulator admits "
                f"{self.max_waiters} (--max-waiters); retry later")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        key = (hub, instance_id)
        self.waiting += 1
        self._watching[key] += 1
        try:
            while True:
                if self.closed:
                    raise ShuttingDown("the emulator is stopping")
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"instance '{instance_id}' did not reach the awaited state in time")
                woken = self._watchers.get(key)
                if woken is None:
                    woken = self._watchers[key] = loop.create_future()
                await asyncio.wait((woken,), timeout=remaining)  # shared: a timeout here leaves it to the others
                row = self._store.peek_instance(hub, instance_id)
                if row is None or predicate(row):
                    return row
        finally:
            self.waiting -= 1
            self._watching[key] -= 1
            if not self._watching[key]:  # the last one gone: forget the instance (no leak per timed-out wait)
                del self._watching[key]
                self._watchers.pop(key, None)
