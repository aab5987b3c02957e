"""Why the store refuses a data file or a write: each a type the CLI and the engine can tell apart.

- :class:`SchemaError`: the file was written by a newer emulator.
- :class:`DataInUse`: another emulator has the file open (through whatever path).
- :class:`DataFileError`: the file cannot be used: damaged, truncated, not an SQLite
  database, a folder, or in a place the emulator may not write to.
- :class:`StorageError`: a write failed (disk full, I/O error). The transaction that
  raised it left nothing behind, on disk or in memory; the engine maps ``full`` to
  RESOURCE_EXHAUSTED and anything else to UNAVAILABLE. :class:`DataFileGone` is one: the
  data file was deleted or replaced under the running emulator.

Each message is one line that names the data file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def describe(path: Path | None) -> str:
    return "the in-memory database" if path is None else str(path)


class SchemaError(RuntimeError):
    """The data file was written by a newer emulator than this one."""


class DataInUse(RuntimeError):
    """Another emulator process has the data file open."""


class DataFileError(RuntimeError):
    """The data file is damaged or cannot be used here."""


class StorageError(RuntimeError):
    """A write to the data file failed; the transaction was rolled back, memory included."""

    def __init__(self, path: Path | None, error: sqlite3.Error):
        self.path = path
        self.error = error
        self.full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        detail = " ".join(str(error).split()) or type(error).__name__
        super().__init__(f"{describe(path)}: write failed: {detail}")


class DataFileGone(StorageError):
    """The path no longer names the file the emulator opened: every write from then on is refused."""

    def __init__(self, path: Path | None):
        error = sqlite3.OperationalError("the data file was deleted or replaced")
        super().__init__(path, error)
        self.args = (f"{describe(path)} was deleted or replaced while the emulator ran: writes are refused "
                     "(nothing more is acknowledged); restart the emulator to start on the file now there",)
