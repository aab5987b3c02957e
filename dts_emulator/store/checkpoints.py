"""WAL checkpoints on a thread of their own, and the bound on the ``-wal`` file they keep.

In WAL mode each commit appends to the ``-wal`` file, and a checkpoint copies those pages
back into the database file. SQLite normally does that inside whichever commit crosses its
threshold, making that call wait for the disk; the store turns that off, and this thread
does the copying on its own connection instead (PASSIVE: it never blocks a commit).

Copying alone does not bound the file. The log starts over from its beginning only when a
commit finds every frame in it copied back, and under steady load commits keep landing
while a checkpoint copies, so it never is: the file grew by about 24 KB per operation,
hundreds of MiB in minutes. So once the log holds ``RESTART_FRAMES`` frames, the thread
copies the few frames written since its unlocked pass while holding the store's lock (no
commit in between: a stall of one small checkpoint), and the next commit restarts the log;
``journal_size_limit`` then cuts the file back to ``WAL_LIMIT_BYTES``. A reader's open
snapshot can keep frames from being copied; the store's readers hold one for one query only.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger("dts_emulator.checkpoints")

# The -wal file's resting size: SQLite's own default threshold (1000 pages of 4 KiB).
WAL_LIMIT_BYTES = 4 * 1024 * 1024
# Commits between checkpoints, and the longest a checkpoint waits while commits come in
# (large payloads make few commits write many pages).
COMMITS_PER_CHECKPOINT = 100
CHECKPOINT_INTERVAL = 0.25
# The log starts over once it holds this many frames' worth of bytes: half the limit, so
# what is written during one round rarely takes the file past it.
RESTART_BYTES = WAL_LIMIT_BYTES // 2


class Checkpointer:
    def __init__(self, path: Path, store_lock: threading.RLock):
        # A short busy timeout: a checkpoint that finds the file busy is simply retried later,
        # and shutting down never waits long for one.
        self._db = sqlite3.connect(str(path), timeout=1.0, check_same_thread=False, isolation_level=None)
        self._restart_frames = max(1, RESTART_BYTES // self._db.execute("PRAGMA page_size").fetchone()[0])
        self._store_lock = store_lock
        self._due = threading.Event()
        self._stopping = False
        self._commits = 0  # since the last checkpoint
        self.restarts = 0  # times the log was brought back to its start
        self.longest_stall = 0.0  # seconds the store's lock was held for a checkpoint, at most
        self._thread = threading.Thread(target=self._run, name="emulator-checkpoints", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Count a commit (called under the store's lock); wake the thread when one is due."""
        self._commits += 1
        if self._commits >= COMMITS_PER_CHECKPOINT:
            self._due.set()

    def _run(self) -> None:
        while True:
            self._due.wait(CHECKPOINT_INTERVAL)
            self._due.clear()
            if self._stopping:
                return
            if not self._commits:
                continue
            self._commits = 0
            try:
                self._checkpoint()
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed (the next one retries): %s", exc)

    def _checkpoint(self) -> None:
        _, frames, _ = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames < self._restart_frames:
            return
        # Not a plain ``with``: Store.close() holds the lock while it waits for this thread.
        if not self._store_lock.acquire(timeout=CHECKPOINT_INTERVAL):
            return  # the store is busy for long (or closing): the next round tries again
        try:
            if self._stopping:
                return
            started = time.perf_counter()
            _, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.longest_stall = max(self.longest_stall, time.perf_counter() - started)
        finally:
            self._store_lock.release()
        if frames == copied:
            self.restarts += 1  # the next commit starts the log over
        else:
            log.debug("WAL checkpoint copied %d of %d frames (a reader holds the rest)", copied, frames)

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
