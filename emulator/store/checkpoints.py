"""WAL checkpoints on a thread of their own, off the path of every commit.

In WAL mode each commit appends to the ``-wal`` file, and a checkpoint copies
those pages back into the database file and syncs it. SQLite normally does that
inside whichever commit crosses its threshold, making that call wait for the
disk. The store turns that off, and this thread does the same work on its own
connection once enough commits have piled up: same durability, no stall.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("emulator.checkpoints")

# Commits between checkpoints: about SQLite's own default of 1000 WAL pages.
COMMITS_PER_CHECKPOINT = 200


class Checkpointer:
    def __init__(self, path: Path):
        # A short busy timeout: a checkpoint that finds the file busy is simply retried later,
        # and shutting down never waits long for one.
        self._db = sqlite3.connect(str(path), timeout=1.0, check_same_thread=False, isolation_level=None)
        self._due = threading.Event()
        self._stopping = False
        self._commits = 0
        self._thread = threading.Thread(target=self._run, name="emulator-checkpoints", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Count a commit (called under the store's lock); wake the thread when one is due."""
        self._commits += 1
        if self._commits >= COMMITS_PER_CHECKPOINT:
            self._commits = 0
            self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stopping:
                return
            try:
                # PASSIVE never blocks the writer; pages it cannot copy yet wait for the next round.
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed (the next one retries): %s", exc)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread; a checkpoint still copying pages after ``timeout`` is left to finish alone.

        Skipping it loses nothing: the pages are in the WAL, and the next start checkpoints them.
        """
        self._stopping = True
        self._due.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("a WAL checkpoint is still running at shutdown; it is left to finish")
            return
        self._db.close()
