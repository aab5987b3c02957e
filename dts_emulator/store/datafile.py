"""Is this file usable as a data file? Checks before SQLite opens it, and one-line reasons after it fails.

SQLite reports a damaged or unwritable file as a generic error on some later statement;
these turn each case (a folder, garbage, a truncated file, a place the emulator may not
write to) into a :class:`DataFileError` that says which file and what is wrong with it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from .errors import DataFileError, DataFileGone

_MAGIC = b"SQLite format 3\x00"
_ADVICE = "move it away (or use another file with --data) to start afresh"


def check_not_folder(path: Path) -> None:
    """A folder cannot be opened for writing on every system, and says so differently on each."""
    if path.is_dir():
        raise DataFileError(f"{path} is a folder, not a data file; give a file path with --data")


def check_header(path: Path, fd: int) -> None:
    """Refuse a file that is not an SQLite database, or a truncated one; ``fd`` is open on it.

    Read through the claim's descriptor: opening and closing another one would drop the
    POSIX locks this process holds on the file (see claim.py).
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return  # a new file: SQLite takes an empty file as a new database
    os.lseek(fd, 0, os.SEEK_SET)
    header = os.read(fd, 100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise DataFileError(f"{path} is not an emulator data file (not an SQLite database, or damaged); {_ADVICE}")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is valid when the "version-valid-for" number equals the change counter.
    if header[92:96] == header[24:28] and pages * page_size > size:
        raise DataFileError(
            f"{path} is truncated: {size} bytes where its header says {pages * page_size}; {_ADVICE}")


def unusable(path: Path, exc: BaseException) -> DataFileError:
    """A one-line DataFileError for what went wrong while opening ``path``."""
    detail = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror  # without the path, which the message names once
    if isinstance(exc, IsADirectoryError):
        return DataFileError(f"{path} is a folder, not a data file; give a file path with --data")
    not_writable = isinstance(exc, PermissionError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM))
    if isinstance(exc, sqlite3.Error):
        lowered = detail.lower()
        not_writable = "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered
        if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
            return DataFileError(f"{path} is damaged ({detail}); {_ADVICE}")
    if not_writable:
        return DataFileError(
            f"{path} cannot be opened for writing ({detail}): the emulator writes the file and, "
            f"in the same folder, its -wal and -shm files")
    return DataFileError(f"{path} cannot be used as a data file ({detail})")


class Identity:
    """Is the path still the file the store opened? Asked before every commit is acknowledged.

    Deleting the data folder (``make clean`` in another shell) or moving another file into
    place leaves SQLite writing happily into a file no path names any more: every write
    since would vanish at the next start. One ``stat`` (about a microsecond) per commit
    notices, and from then on every commit is refused (the engine logs storage errors once
    per interval).
    """

    def __init__(self, path: Path, fd: int):
        self.path = path
        st = os.fstat(fd)
        self._key = (st.st_dev, st.st_ino)
        self.gone = False

    def check(self) -> None:
        if not self.gone:
            try:
                st = os.stat(self.path)
                self.gone = (st.st_dev, st.st_ino) != self._key
            except FileNotFoundError:
                self.gone = True
            except OSError:
                return  # unreadable for a moment (permissions, a stale mount): no evidence it is gone
            if not self.gone:
                return
        raise DataFileGone(self.path)
