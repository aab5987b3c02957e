"""The data file's tables, and the migrations that bring an older file up to date.

``MIGRATIONS`` is a list of steps, each ONE SQL statement (never split on ``;``). A file's
version is the number of steps applied, kept in ``PRAGMA user_version``; each step runs in
a transaction of its own together with its version bump, so a crash between steps leaves a
file that the next start simply continues. Append steps; never change or reorder one.

Files from before ``user_version`` carry ``meta.schema_version = 1``, which is the first
``LEGACY_STEPS`` steps: such a file is adopted at that version. The last two steps write
``meta.schema_version = 2``, so an emulator from before ``user_version`` refuses a file from
this one with its own clear message instead of failing on a table that already exists.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from . import oplog
from .errors import DataFileError, SchemaError, describe

MIGRATIONS: list[str] = [
    # 1-6: the schema that the files with meta.schema_version = 1 have.
    """CREATE TABLE instances (
        hub TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        name TEXT NOT NULL,
        version TEXT,
        status INTEGER NOT NULL,
        input TEXT,
        output TEXT,
        custom_status TEXT,
        failure BLOB,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        completed_at REAL,
        scheduled_start REAL,
        parent_instance_id TEXT,
        parent_execution_id TEXT,
        parent_task_id INTEGER,
        tags TEXT,
        PRIMARY KEY (hub, instance_id)
    )""",
    "CREATE INDEX instances_by_created ON instances (hub, created_at)",
    "CREATE INDEX instances_by_parent ON instances (hub, parent_instance_id) WHERE parent_instance_id IS NOT NULL",
    """CREATE TABLE history (
        hub TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (hub, instance_id, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hub TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        execution_id TEXT,
        sender TEXT,
        visible_at REAL NOT NULL,
        payload BLOB NOT NULL
    )""",
    """CREATE TABLE entities (
        hub TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        state TEXT,
        last_modified REAL NOT NULL,
        lock_owner TEXT,
        critical_section TEXT,
        PRIMARY KEY (hub, instance_id)
    )""",
    # 7-8: the marker that older emulators read (see the module docstring).
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '2')",
    # 9-10: the entity operation log, and which entity started an instance (oplog.py).
    oplog.CREATE,
    oplog.CREATE_STARTS,
]

SCHEMA_VERSION = len(MIGRATIONS)
LEGACY_STEPS = 6  # what meta.schema_version = 1 stands for


def version_of(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite3.Connection, path: Path | None, steps: Sequence[str] = MIGRATIONS) -> None:
    """Bring the file to ``len(steps)``, or raise SchemaError if it is newer than that."""
    version = version_of(db)
    if version == 0:
        version = _adopt_legacy(db, path)
    if version > len(steps):
        raise SchemaError(f"{describe(path)} has schema version {version}; this emulator reads up to {len(steps)}")
    for step in range(version, len(steps)):
        _apply(db, steps[step], step + 1)


def _adopt_legacy(db: sqlite3.Connection, path: Path | None) -> int:
    """The version of a file from before user_version (0 for a new file)."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:  # every step bumps the version, so a file of ours at version 0 has no tables
            raise DataFileError(
                f"{describe(path)} is an SQLite database of something else (tables: {', '.join(sorted(tables))}); "
                "give the emulator a file of its own with --data")
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    legacy = int(row[0]) if row else 0
    if legacy != 1:
        raise SchemaError(f"{describe(path)} has schema version {legacy} (meta); this emulator reads up to 1 there")
    _apply(db, None, LEGACY_STEPS)
    return LEGACY_STEPS


def _apply(db: sqlite3.Connection, statement: str | None, version: int) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        if statement is not None:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {int(version)}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
