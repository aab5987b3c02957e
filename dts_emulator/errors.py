"""What the engine raises to its callers (the gRPC service maps each to a status code)."""

from __future__ import annotations

import sqlite3

from .store import StorageError

# What a failed write raises: the disk is full, the file went away, an I/O error.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (StorageError, sqlite3.Error)


class StaleWorkItem(Exception):
    """A completion arrived for a work item that is no longer leased to its sender."""


class Refused(ValueError):
    """A worker's answer could not be applied; its work was consumed and the failure recorded."""


class OverLimit(Exception):
    """More clients wait, or more worker streams are open, than the emulator admits."""


class ShuttingDown(Exception):
    """The emulator is stopping: the call should be retried against the next one."""
