"""One demo at a time per project folder and per endpoint: a second one says plainly that one is running.

Two demos on the same entities would each see the other's signals and fail after a silent
minute. An OS file lock (released by the OS when its holder exits, even when killed) in the
project's ``.emulator/`` and one per endpoint in the system's temp folder (another clone on the
same port) keep that from happening; the file says who holds it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class AlreadyRunning(Exception):
    """Another demo holds the lock; the message says which and what to do."""


class FileLock:
    """An exclusive, non-blocking lock on ``path``, with the holder's pid and folder written in it."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = path, what
        self._file = None

    def acquire(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 - held open while the demo runs
        try:
            _lock(f)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise AlreadyRunning(f"another demo is running {self.what} ({holder}); wait for it to end, or stop "
                                 "it, then run this one again") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, in {Path.cwd()}")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None


def _lock(f) -> None:
    if os.name == "nt":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def demo_locks(project: Path, endpoint: str | None) -> list[FileLock]:
    """The locks a demo takes: its folder's, and its endpoint's (None: a port of its own, picked at start)."""
    locks = [FileLock(project / ".emulator" / "demo.lock", f"in {project}")]
    if endpoint is not None:
        digest = hashlib.sha256(endpoint.encode()).hexdigest()[:16]
        locks.append(FileLock(Path(tempfile.gettempdir()) / f"dts-sample-demo-{digest}.lock", f"at {endpoint}"))
    return locks
