"""One emulator per database file, whatever path names it (same path, symlink, hard link, ``..``)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dts_emulator.store import DataInUse, Store
from dts_emulator.store.claim import LOCK_OFFSET, claim
from tests.helpers import ROOT, Process


def names_for(path: Path, how: str) -> Path:
    """Another name for the file at ``path``."""
    if how == "same path":
        return path
    if how == "symlink":
        (path.parent / "link.db").symlink_to(path)
        return path.parent / "link.db"
    if how == "hard link":
        os.link(path, path.parent / "hard.db")
        return path.parent / "hard.db"
    (path.parent / "sub").mkdir()
    return path.parent / "sub" / ".." / path.name


WAYS = ["same path", "symlink", "hard link", "dot-dot"]


@pytest.mark.parametrize("how", WAYS)
def test_a_second_store_through_any_name_is_refused(tmp_path, how):
    path = tmp_path / "data.db"
    first = Store(path)
    try:
        other = names_for(path, how)
        assert other.resolve() == path.resolve() or os.path.samefile(other, path)
        with pytest.raises(DataInUse, match="in use by another emulator") as refused:
            Store(other)
        assert str(other.resolve()) in str(refused.value)  # the file as the refused opener named it
    finally:
        first.close()
    Store(other).close()  # free again once the first is closed


@pytest.mark.parametrize("how", ["symlink", "hard link"])
def test_a_second_emulator_process_exits_2_with_one_line_naming_the_file(tmp_path, how):
    path = tmp_path / "data.db"
    first = Store(path)
    try:
        other = names_for(path, how)
        p = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", "0",
                     "--data", str(other)])
        try:
            assert p.wait() == 2, p.output
        finally:
            p.stop()  # never left behind, even if it started
    finally:
        first.close()
    lines = [line for line in p.lines if line.strip()]
    assert len(lines) == 1, p.output
    assert str(other.resolve()) in lines[0] and "in use by another emulator" in lines[0]


def test_the_record_lock_used_on_macos_and_bsd_refuses_other_names_and_other_processes(tmp_path):
    """The branch for POSIX systems other than Linux runs here too: fcntl record locks exist on Linux."""
    path = tmp_path / "data.db"
    held = claim(path, platform="darwin")
    try:
        with pytest.raises(DataInUse):  # in this process: the registry
            claim(names_for(path, "hard link"), platform="darwin")
        other_process = subprocess.run(
            [sys.executable, "-c", "import sys; from pathlib import Path; from dts_emulator.store.claim import claim; "
             "claim(Path(sys.argv[1]), platform='darwin')", str(names_for(path, "symlink"))],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert other_process.returncode != 0 and "DataInUse" in other_process.stderr, other_process.stderr
    finally:
        held.release()
    claim(path, platform="darwin").release()


class FakeMsvcrt:
    """msvcrt.locking as Windows has it: a byte range from the descriptor's position."""

    LK_UNLCK, LK_NBLCK = 0, 2

    def __init__(self, held_by_another_process: bool = False):
        self.held_by_another_process = held_by_another_process
        self.calls: list[tuple[int, int, int]] = []

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        self.calls.append((os.lseek(fd, 0, os.SEEK_CUR), mode, nbytes))
        if self.held_by_another_process:
            raise OSError(errno.EACCES, "Permission denied")


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def test_the_windows_branch_locks_one_byte_of_sqlites_lock_page(tmp_path):
    path = tmp_path / "data.db"
    msvcrt = FakeMsvcrt()
    held = claim(path, platform="win32", lock_module=msvcrt)
    try:
        assert msvcrt.calls == [(LOCK_OFFSET, msvcrt.LK_NBLCK, 1)]
        assert 0x40000000 + 512 <= LOCK_OFFSET < 0x40000000 + 1024  # past SQLite's own locks, inside its page
        with pytest.raises(DataInUse):
            claim(names_for(path, "hard link"), platform="win32", lock_module=msvcrt)
    finally:
        held.release()
    claim(path, platform="win32", lock_module=msvcrt).release()


def test_the_windows_branch_refuses_a_file_another_process_locked(tmp_path):
    before = open_descriptors()
    with pytest.raises(DataInUse, match="in use by another emulator"):
        claim(tmp_path / "data.db", platform="win32", lock_module=FakeMsvcrt(held_by_another_process=True))
    assert open_descriptors() == before  # nothing left open
    claim(tmp_path / "data.db", platform="win32", lock_module=FakeMsvcrt()).release()  # nor registered


def test_the_store_imports_and_runs_without_posix_only_modules():
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import dts_emulator.cli\n"
            "from dts_emulator.store import Store\n"
            "Store(None).close()\n"
            "print('imported')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr
