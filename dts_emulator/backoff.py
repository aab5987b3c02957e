"""Counting failures per target: how long until its next try, and when to give up on it."""

from __future__ import annotations

import logging
import time

from .errors import STORAGE_ERRORS
from .store import Store

log = logging.getLogger("dts_emulator")

# Retry delays after a completion or a wake-up failed to commit: no hot loop.
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 10.0
# How often the same storage error is logged at most (it repeats while the disk is full).
STORAGE_LOG_INTERVAL = 10.0
# A target whose work failed this many times in a row for any reason but storage (its completion
# did not apply, or its worker's stream ended while holding it) is given up on: its instance or
# operations fail, and the rest of the hub's work flows.
MAX_ATTEMPTS = 5

Key = tuple[str, str, str]  # (hub, kind, target)


class Backoff:
    def __init__(self, store: Store):
        self._store = store
        self._failures: dict[Key, int] = {}  # targets whose last apply failed
        self._attempts: dict[Key, int] = {}  # failures in a row that were not storage errors
        self._storage_logged_at = float("-inf")
        # The last storage error, and how many writes had committed then (health.py: refused since?).
        self.storage_error: tuple[str, int] | None = None

    def delay(self, key: Key, error: BaseException | None = None) -> float:
        """One more failure of ``key``: seconds until its next try, growing with each failure."""
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        if isinstance(error, STORAGE_ERRORS):
            self.storage_failed(error)
        return min(FIRST_RETRY_SECONDS * 2 ** (failures - 1), MAX_RETRY_SECONDS)

    def exhausted(self, key: Key) -> bool:
        """One more failure (not of storage) of ``key``'s work: whether it has had its MAX_ATTEMPTS."""
        attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
        return attempts >= MAX_ATTEMPTS

    def forget(self, key: Key) -> None:
        """The target's work is done with (applied, refused, or failed for good)."""
        self._failures.pop(key, None)
        self._attempts.pop(key, None)

    def clear(self) -> None:
        """Forget every count (a reset: the pytest plugin's next test starts afresh)."""
        self._failures.clear()
        self._attempts.clear()

    def storage_failed(self, error: BaseException) -> None:
        """Log a storage error once per interval: it repeats for as long as the disk is full."""
        self.storage_error = (str(error), self._store.writes_committed)
        moment = time.monotonic()
        if moment - self._storage_logged_at >= STORAGE_LOG_INTERVAL:
            self._storage_logged_at = moment
            log.error("storage error on %s: %s (work is retried with backoff; nothing acknowledged is lost)",
                      self._store.path or "the in-memory database", error)
