"""Read-only queries (lists, searches, counts) run off the engine's path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .store import Store

T = TypeVar("T")


class Reader:
    def __init__(self, store: Store):
        # The store's reader and one thread to run it on (its connection serves one thread at a time).
        self.reads = store.reads()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-reader")

    async def read(self, query: Callable[[Any], T]) -> T:
        """Run a read-only query off the engine's path.

        With a data file, the store's reader has a connection of its own on a thread
        of its own, so a long scan never holds up a completion; an in-memory store
        can only be read through its one connection, on the loop.
        """
        if self.reads.same_thread:
            return query(self.reads)
        return await asyncio.get_running_loop().run_in_executor(self._thread, query, self.reads)

    async def offload(self, work: Callable[[], T]) -> T:
        """Run CPU work that touches no engine state (building a long view) on the reader's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    def shutdown(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
