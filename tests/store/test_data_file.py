"""A damaged or unusable data file: ``python -m dts_emulator`` exits 2 with one line naming the file and the fault."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dts_emulator.store import DataFileError, EntityRow, Store
from tests.helpers import Process


def run_emulator(data: Path) -> tuple[int, list[str]]:
    p = Process([sys.executable, "-m", "dts_emulator", "--port", "0", "--dashboard-port", "0", "--data", str(data)])
    try:
        code = p.wait()
    finally:
        p.stop()  # never left behind, even if it started
    return code, [line for line in p.lines if line.strip()]


def assert_refused(data: Path, fault: str) -> str:
    code, lines = run_emulator(data)
    assert code == 2, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert str(data) in lines[0] and fault in lines[0], lines[0]
    return lines[0]


def a_data_file(path: Path, entities: int = 2000) -> Path:
    s = Store(path)
    with s.transaction():
        for n in range(entities):
            s.put_entity(EntityRow("h", f"@c@{n}", "x" * 200, 1.0, None, None))
    s.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    db.close()
    return path


def test_garbage_is_refused(tmp_path):
    data = tmp_path / "garbage.db"
    data.write_bytes(os.urandom(8192))
    assert_refused(data, "not an emulator data file")


def test_a_truncated_file_is_refused(tmp_path):
    data = a_data_file(tmp_path / "cut.db")
    whole = data.read_bytes()
    assert len(whole) > 100_000  # pages enough to cut
    data.write_bytes(whole[:len(whole) // 2])
    line = assert_refused(data, "is truncated")
    assert f"{len(whole) // 2} bytes" in line


def test_a_file_cut_inside_its_header_is_refused(tmp_path):
    data = a_data_file(tmp_path / "head.db", entities=1)
    data.write_bytes(data.read_bytes()[:60])
    assert_refused(data, "not an emulator data file")


def test_damage_sqlite_finds_is_refused(tmp_path):
    data = a_data_file(tmp_path / "pages.db")
    raw = bytearray(data.read_bytes())
    page_size = int.from_bytes(raw[16:18], "big")
    raw[page_size:] = os.urandom(len(raw) - page_size)  # the header is intact; every other page is noise
    data.write_bytes(bytes(raw))
    assert_refused(data, "is damaged")


def test_another_applications_database_is_left_alone(tmp_path):
    data = tmp_path / "theirs.db"
    db = sqlite3.connect(data)
    db.execute("CREATE TABLE invoices (n INTEGER)")
    db.commit()
    db.close()
    assert_refused(data, "is an SQLite database of something else (tables: invoices)")
    db = sqlite3.connect(data)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["invoices"]  # nothing added
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # nor changed
    db.close()


def test_a_folder_given_as_the_file_is_refused(tmp_path):
    (tmp_path / "folder.db").mkdir()
    assert_refused(tmp_path / "folder.db", "is a folder")


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder the emulator may not write to: chmod for a normal user; a read-only mount for root."""
    where = tmp_path / "ro"
    where.mkdir()
    a_data_file(where / "kept.db", entities=1)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"root ignores folder permissions and no read-only mount is possible: {mounted.stderr.strip()}")
    try:
        a_data_file(where / "kept.db", entities=1)
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_read_only_folder_is_refused(read_only_folder):
    assert_refused(read_only_folder / "new.db", "cannot be opened for writing")
    assert_refused(read_only_folder / "kept.db", "cannot be opened for writing")


def test_the_store_raises_data_file_error_itself(tmp_path):
    (tmp_path / "folder.db").mkdir()
    with pytest.raises(DataFileError, match="is a folder"):
        Store(tmp_path / "folder.db")
