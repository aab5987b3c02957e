"""One emulator per database file, whatever path names it: two would hand out the same work twice.

The lock is on the database file itself (its inode), opened through the path with symlinks
and ``..`` resolved, so a second opener through the same path, a symlink or a hard link finds
it taken. The operating system drops it with the process, so a killed emulator never leaves
it behind. The descriptor holding it stays open until the store's SQLite connections are
closed: on POSIX, closing any descriptor of a file drops every ``fcntl`` lock the process
holds on it, SQLite's own included.

Per platform (no POSIX-only import at module level):

- Linux: ``flock`` on the file. Linux keeps flock locks apart from the ``fcntl`` record
  locks SQLite takes on the same file, and ties them to the open file description, so a
  second Store in the same process is refused too.
- Other POSIX (macOS, BSD): there ``flock`` and ``fcntl`` locks may conflict, so a ``fcntl``
  record lock on one byte that SQLite never locks (``LOCK_OFFSET``), plus an in-process
  registry since record locks never conflict within one process. Like SQLite's own locks,
  it lasts while no descriptor of the file is closed in this process: the store closes its
  SQLite connections (checkpointer and readers included) only when it closes itself.
- Windows: ``msvcrt.locking`` on that same byte, plus the registry. Windows byte locks are
  mandatory, so the byte lies in SQLite's lock-byte page, which never holds data and whose
  first 512 bytes are SQLite's own locks (the emulator's files use pages of 1024 bytes or more).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from .errors import DataInUse

# SQLite's lock-byte page starts at 1 GiB; it locks the first 512 bytes of it.
LOCK_OFFSET = 0x40000000 + 0x300

_registry: set[tuple[int, int]] = set()  # (device, inode) claimed in this process (record-lock platforms)
_registry_lock = threading.Lock()


class Claim:
    """The held lock; ``release()`` only after every SQLite connection to the file is closed."""

    def __init__(self, fd: int, key: tuple[int, int] | None):
        self.fd = fd
        self._key = key

    def release(self) -> None:
        if self.fd < 0:
            return
        os.close(self.fd)  # the OS lock goes with the descriptor
        self.fd = -1
        if self._key is not None:
            with _registry_lock:
                _registry.discard(self._key)


def claim(path: Path, platform: str = sys.platform, lock_module: ModuleType | None = None) -> Claim:
    """Lock the database file that ``path`` names (creating it empty if missing).

    ``platform`` and ``lock_module`` (``fcntl`` or ``msvcrt``) are there for tests.
    Raises DataInUse naming the file, or OSError if it cannot be opened at all.
    """
    resolved = path.resolve()
    if platform.startswith("linux"):
        fd = _open(resolved)
        try:
            locked = _flock(fd, lock_module)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            _refuse(fd, path, resolved)
        return Claim(fd, None)
    with _registry_lock:
        # Checked before opening: closing a second descriptor of a file claimed in this
        # process would drop the record lock (and SQLite's) held through the first.
        try:
            st = os.stat(resolved)
            if (st.st_dev, st.st_ino) in _registry:
                _refuse(-1, path, resolved)
        except FileNotFoundError:
            pass
        fd = _open(resolved)
        try:
            st = os.fstat(fd)
            locked = _lock_windows(fd, lock_module) if platform == "win32" else _lock_record(fd, lock_module)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            _refuse(fd, path, resolved)
        _registry.add((st.st_dev, st.st_ino))
        return Claim(fd, (st.st_dev, st.st_ino))


def _open(resolved: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(resolved, flags, 0o666)


def _refuse(fd: int, path: Path, resolved: Path) -> None:
    links = os.stat(resolved).st_nlink
    if fd >= 0:
        os.close(fd)
    named = str(resolved) if resolved == path.absolute() else f"{resolved} (named {path})"
    also = f" (the file has {links} names, hard links: the other emulator may use another)" if links > 1 else ""
    raise DataInUse(f"{named} is in use by another emulator{also}; stop it, or use another file with --data")


def _flock(fd: int, fcntl: ModuleType | None) -> bool:
    if fcntl is None:
        import fcntl
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _lock_record(fd: int, fcntl: ModuleType | None) -> bool:
    if fcntl is None:
        import fcntl
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, LOCK_OFFSET, os.SEEK_SET)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):  # which one depends on the system
            return False
        raise
    return True


def _lock_windows(fd: int, msvcrt: ModuleType | None) -> bool:
    if msvcrt is None:
        import msvcrt
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True
