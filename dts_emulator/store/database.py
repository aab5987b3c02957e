"""The data file on disk: claimed, checked, opened with its pragmas and migrated; closed in order.

Split from store.py, which keeps the Store's memory (caches, mirror, indexes) over this
connection. Opening refuses what is not a usable data file before SQLite writes to it
(datafile.py, claim.py, schema.py); closing lets go of the file last (see claim.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from .checkpoints import WAL_LIMIT_BYTES, Checkpointer
from .claim import Claim, claim
from .datafile import Identity, check_header, check_not_folder
from .errors import DataFileGone
from .schema import migrate
from .writes import Writer

Connect = Callable[..., sqlite3.Connection]

# The page size of a new data file (see Database._open).
PAGE_SIZE = 1024


class Database:
    """The writing connection to ``path`` (a private in-memory database when None), its Writer,
    checkpointer and claim. A failure while opening closes what was opened, then raises."""

    def __init__(self, path: Path | None, connect: Connect, lock: threading.RLock):
        self.path = path
        self.claim: Claim | None = None
        self.checkpointer: Checkpointer | None = None
        self.identity: Identity | None = None
        self.db: sqlite3.Connection | None = None
        try:
            self._open(connect, lock)
        except BaseException:
            self.close()
            raise

    def _open(self, connect: Connect, lock: threading.RLock) -> None:
        target = ":memory:"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_not_folder(self.path)
            self.claim = claim(self.path)
            check_header(self.path, self.claim.fd)
            target = str(self.path.resolve())  # the WAL beside the real file, not beside a symlink
        # One connection, used under one lock: SQLite serializes writers anyway.
        db = self.db = connect(target, check_same_thread=False, isolation_level=None, cached_statements=256)
        # Before the first table: a new file gets small pages. Each commit rewrites whole pages of
        # every table and index it touches, so 1 KiB pages write a quarter of the WAL that 4 KiB
        # pages do (21 KB per call instead of 82 KB, see bench/soak.py). An existing file keeps its own.
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        migrate(db, self.path)  # first: it refuses another application's database before anything changes it
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; only power loss can drop
        # the last commits, which a local emulator accepts for speed.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        if self.path is not None:
            db.execute("PRAGMA wal_autocheckpoint=0")  # see checkpoints.py
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")  # the log's size when it starts over
            self.checkpointer = Checkpointer(Path(target), lock)
        identity = self.identity = Identity(Path(target), self.claim.fd) if self.claim is not None else None
        self.writer = Writer(db, self.path, self.checkpointer.committed if self.checkpointer else None,
                             identity.check if identity else None)

    def gone(self) -> str | None:
        """Why writes will be refused because the data file was deleted or replaced (one ``stat``), or None."""
        try:
            if self.identity is not None:
                self.identity.check()
        except DataFileGone as gone:
            return str(gone)
        return None

    def close(self) -> None:
        """Close checkpointer and connection, and only then let go of the file (see claim.py)."""
        try:
            if self.checkpointer is not None:
                self.checkpointer.close()
                self.checkpointer = None
            if self.db is not None:
                self.db.close()
        finally:
            if self.claim is not None:
                self.claim.release()
