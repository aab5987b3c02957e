"""SQLite persistence for the emulator: rows in, rows out, no protobuf.

Everything the emulator acknowledges lives here, so that a restart (even after
``kill -9``) finds instances, histories, entity states and pending messages as
they were. Callers group writes with :meth:`Store.transaction`; one completion
is one transaction. History events and message payloads are opaque bytes.

Reads on the hot path come from memory: pending messages are mirrored in full (they
are bounded by the work not yet done), and instance rows, entity rows and histories
are cached up to a fixed size. Writes are queued in the caller's transaction and
reach SQLite as few statements when it commits (see ``_Writes``); a rolled-back
transaction undoes its changes to the memory too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import Checkpointer

SCHEMA_VERSION = 1

# Numbered migrations: MIGRATIONS[n] takes a file from version n to n + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE instances (
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
    );
    CREATE INDEX instances_by_created ON instances (hub, created_at);
    CREATE INDEX instances_by_parent ON instances (hub, parent_instance_id)
        WHERE parent_instance_id IS NOT NULL;
    CREATE TABLE history (
        hub TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event BLOB NOT NULL,
        PRIMARY KEY (hub, instance_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hub TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        execution_id TEXT,
        sender TEXT,
        visible_at REAL NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE entities (
        hub TEXT NOT NULL,
        instance_id TEXT NOT NULL,
        state TEXT,
        last_modified REAL NOT NULL,
        lock_owner TEXT,
        critical_section TEXT,
        PRIMARY KEY (hub, instance_id)
    );
    """,
]

ORCHESTRATION = "orchestration"
ENTITY = "entity"
ACTIVITY = "activity"

# Bounds of the read caches (entries); the message mirror is bounded by pending work.
CACHED_ROWS = 20_000
CACHED_HISTORIES = 2_000
_ABSENT = object()


@dataclass
class InstanceRow:
    hub: str
    instance_id: str
    execution_id: str
    name: str
    version: str | None
    status: int
    input: str | None
    output: str | None
    custom_status: str | None
    failure: bytes | None
    created_at: float
    updated_at: float
    completed_at: float | None
    scheduled_start: float | None
    parent_instance_id: str | None
    parent_execution_id: str | None
    parent_task_id: int | None
    tags: dict[str, str]


@dataclass
class MessageRow:
    id: int
    hub: str
    kind: str
    target: str
    execution_id: str | None
    sender: str | None
    visible_at: float
    payload: bytes


@dataclass
class EntityRow:
    hub: str
    instance_id: str
    state: str | None
    last_modified: float
    lock_owner: str | None
    critical_section: str | None


_INSTANCE_COLUMNS = (
    "hub, instance_id, execution_id, name, version, status, input, output, custom_status, failure, "
    "created_at, updated_at, completed_at, scheduled_start, parent_instance_id, parent_execution_id, "
    "parent_task_id, tags"
)


# An upsert updates the row in place, so the created_at index is left alone.
_UPSERT_INSTANCE = (
    f"INSERT INTO instances ({_INSTANCE_COLUMNS}) VALUES ({', '.join('?' * len(_INSTANCE_COLUMNS.split(',')))}) "
    "ON CONFLICT (hub, instance_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _INSTANCE_COLUMNS.split(",")[2:])
)


def _copy_instance(row: InstanceRow) -> InstanceRow:
    copy = object.__new__(InstanceRow)
    copy.__dict__.update(row.__dict__)
    copy.tags = dict(row.tags)
    return copy


def _copy_entity(row: EntityRow) -> EntityRow:
    copy = object.__new__(EntityRow)
    copy.__dict__.update(row.__dict__)
    return copy


def _instance(row: sqlite3.Row) -> InstanceRow:
    values = list(row)
    values[-1] = json.loads(values[-1]) if values[-1] else {}
    return InstanceRow(*values)


class SchemaError(RuntimeError):
    """The data file was written by a newer emulator than this one."""


class DataInUse(RuntimeError):
    """Another emulator process has the data file open."""


def _claim(path: Path):
    """One emulator per data file: two would hand out the same work twice.

    The lock goes with the process, so a killed emulator never leaves it behind.
    """
    import fcntl

    handle = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise DataInUse(f"{path} is in use by another emulator; stop it, or use another file with --data") from None
    return handle


class _Writes:
    """The open transaction's writes, sent to SQLite in as few statements as possible.

    Every call into SQLite lets go of the GIL and takes it back, which under load costs more
    than the statement itself. So consecutive rows for the same statement become one
    multi-row statement, and a transaction that comes to one statement needs no BEGIN/COMMIT.
    """

    # Rows per multi-row statement: well under SQLite's limit on bound variables.
    ROWS_PER_STATEMENT = 200

    def __init__(self):
        self._statements: list[tuple[str, str, list]] = []  # (template, row placeholder, rows)

    def __bool__(self) -> bool:
        return bool(self._statements)

    def add(self, template: str, placeholder: str, rows: Sequence[Sequence]) -> None:
        """Queue rows for ``template`` (its ``{}`` takes one placeholder per row)."""
        last = self._statements[-1] if self._statements else None
        if placeholder and last is not None and last[0] == template and len(last[2]) < self.ROWS_PER_STATEMENT:
            last[2].extend(rows)
        else:
            self._statements.append((template, placeholder, list(rows)))

    def take(self) -> list[tuple[str, list]]:
        """The queued statements as (sql, parameters), leaving the queue empty."""
        statements, self._statements = self._statements, []
        out = []
        for template, placeholder, rows in statements:
            if not placeholder:  # a plain statement, once per row of parameters
                out.extend((template, row) for row in rows)
                continue
            for i in range(0, len(rows), self.ROWS_PER_STATEMENT):
                chunk = rows[i:i + self.ROWS_PER_STATEMENT]
                if len(chunk) == 1:
                    out.append((template.replace("{}", placeholder), chunk[0]))
                    continue
                sql = template.replace("{}", ", ".join([placeholder] * len(chunk)))
                out.append((sql, [value for row in chunk for value in row]))
        return out

    def clear(self) -> None:
        self._statements.clear()


class _Transaction:
    """``Store.transaction()``: a plain context manager, as it runs several times per work item."""

    __slots__ = ("store", "outer")

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        store._lock.acquire()
        self.outer = not store._depth
        store._depth += 1

    def __exit__(self, kind, exc, tb) -> None:
        store = self.store
        try:
            store._depth -= 1
            if not self.outer:
                return
            try:
                if kind is None:
                    try:
                        store._commit()
                    except BaseException:
                        self._undo()
                        raise
                else:
                    self._undo()
            finally:
                store._undo.clear()
        finally:
            store._lock.release()

    def _undo(self) -> None:
        store = self.store
        store._writes.clear()
        if store._begun:
            store._begun = False
            store._db.execute("ROLLBACK")
        for undo in reversed(store._undo):
            undo()


class Store:
    """One SQLite database shared by all task hubs (rows carry their hub)."""

    def __init__(self, path: str | Path | None):
        """Open ``path``, or a private in-memory database when it is None."""
        self.path = None if path is None else Path(path)
        self._lock_file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = _claim(self.path)
        target = ":memory:" if self.path is None else str(self.path)
        # One connection, used under one lock: SQLite serializes writers anyway,
        # and the emulator's own lock already orders every change.
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None, cached_statements=256)
        self._lock = threading.RLock()
        self._depth = 0
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; only power loss can drop
        # the last commits, which a local emulator accepts for speed.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        self._checkpointer = None
        if self.path is not None:
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # see checkpoints.py
        self._undo: list[Callable[[], None]] = []
        self._writes = _Writes()
        self.reads, self.same_thread = self, True  # interim: reads on the engine's loop
        self._begun = False  # BEGIN sent for the open transaction
        self._instances: OrderedDict = OrderedDict()
        self._entities: OrderedDict = OrderedDict()
        self._histories: OrderedDict = OrderedDict()
        self._migrate()
        if self.path is not None:
            self._checkpointer = Checkpointer(self.path)
        self._load_messages()
        # (hub, orchestration) -> entities it holds locked, so that finishing an
        # orchestration that holds none costs no query.
        self._locks: dict[tuple[str, str], set[str]] = {}
        for hub, entity_id, owner in self._rows(
                "SELECT hub, instance_id, lock_owner FROM entities WHERE lock_owner IS NOT NULL"):
            self._locks.setdefault((hub, owner), set()).add(entity_id)

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()  # also releases the claim

    # -- schema ---------------------------------------------------------------

    def _migrate(self) -> None:
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} has schema version {version}; this emulator reads up to {SCHEMA_VERSION}"
            )
        while version < SCHEMA_VERSION:
            with self.transaction():
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self._exec(statement)
                version += 1
                self._exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))

    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    # -- transactions -----------------------------------------------------------

    def transaction(self) -> _Transaction:
        """Group writes atomically; nested uses join the outer transaction."""
        return _Transaction(self)

    def _remember(self, undo: Callable[[], None]) -> None:
        if self._depth:
            self._undo.append(undo)

    def _cache(self, cache: OrderedDict, key, value, limit: int) -> None:
        """Set a cache entry (undone if the transaction rolls back), evicting the oldest."""
        old = cache.get(key, _ABSENT)
        self._remember(lambda: cache.pop(key, None) if old is _ABSENT else cache.__setitem__(key, old))
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)

    def _rows(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._send()  # a read sees the transaction's own writes
            cur = self._db.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return cur.fetchall()

    def _exec(self, sql: str, params: Sequence = ()) -> None:
        self._exec_rows(sql, "", [params])

    def _exec_rows(self, template: str, placeholder: str, rows: Sequence[Sequence]) -> None:
        """Write rows: at once outside a transaction, else queued until it commits (see _Writes)."""
        with self._lock:
            if self._depth:
                self._writes.add(template, placeholder, rows)
                return
            writes = _Writes()
            writes.add(template, placeholder, rows)
            for sql, params in writes.take():
                self._db.execute(sql, params)

    def _send(self, last: bool = False) -> None:
        """Send queued writes into the open transaction; ``last``: nothing follows them."""
        statements = self._writes.take()
        if not statements:
            return
        if not self._begun:
            if last and len(statements) == 1:
                self._db.execute(*statements[0])  # one statement is a transaction of its own
                return
            self._db.execute("BEGIN")
            self._begun = True
        for sql, params in statements:
            self._db.execute(sql, params)

    def _commit(self) -> None:
        wrote = bool(self._writes) or self._begun
        self._send(last=True)
        if self._begun:
            self._begun = False
            self._db.execute("COMMIT")
        if wrote and self._checkpointer is not None:
            self._checkpointer.committed()

    # -- instances --------------------------------------------------------------

    def get_instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        """A copy of the instance's row (callers change it, then put it back)."""
        row = self.peek_instance(hub, instance_id)
        return None if row is None else _copy_instance(row)

    def peek_instance(self, hub: str, instance_id: str) -> InstanceRow | None:
        """The instance's row itself, for reading only: cheaper than a copy."""
        with self._lock:
            row = self._instances.get((hub, instance_id), _ABSENT)
            if row is _ABSENT:
                rows = self._rows(
                    f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE hub = ? AND instance_id = ?",
                    (hub, instance_id),
                )
                row = _instance(rows[0]) if rows else None
                self._cache(self._instances, (hub, instance_id), row, CACHED_ROWS)
            return row

    def add_instance(self, row: InstanceRow) -> None:
        """Store a new instance (none with its ID exists): it has no history yet, so none is read."""
        with self._lock:
            self.put_instance(row)
            self._cache(self._histories, (row.hub, row.instance_id), (), CACHED_HISTORIES)

    def put_instance(self, row: InstanceRow) -> None:
        values = list(vars(row).values())
        values[-1] = json.dumps(row.tags) if row.tags else None
        with self._lock:
            self._exec(_UPSERT_INSTANCE, values)
            self._cache(self._instances, (row.hub, row.instance_id), _copy_instance(row), CACHED_ROWS)

    def delete_instance(self, hub: str, instance_id: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM instances WHERE hub = ? AND instance_id = ?", (hub, instance_id))
            self._cache(self._instances, (hub, instance_id), None, CACHED_ROWS)
            self.clear_history(hub, instance_id)
            for kind in (ORCHESTRATION, ACTIVITY):
                self.delete_messages([m.id for m in self.messages_for(hub, kind, instance_id)])

    def query_instances(
        self,
        hub: str,
        statuses: Sequence[int] = (),
        created_from: float | None = None,
        created_to: float | None = None,
        completed_from: float | None = None,
        completed_to: float | None = None,
        prefix: str | None = None,
        after: tuple[float, str] | None = None,
        limit: int | None = None,
        parent: str | None = None,
        search: str | None = None,
        newest_first: bool = False,
    ) -> list[InstanceRow]:
        """Instances ordered by (created_at, instance_id); ``after`` continues a page.

        ``search`` matches a part of the instance ID or the orchestration name.
        """
        where, params = ["hub = ?"], [hub]
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        for column, op, value in (
            ("created_at", ">=", created_from),
            ("created_at", "<", created_to),
            ("completed_at", ">=", completed_from),
            ("completed_at", "<", completed_to),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            params.extend([len(prefix), prefix])
        if parent is not None:
            where.append("parent_instance_id = ?")
            params.append(parent)
        if search:
            where.append("(instr(instance_id, ?) > 0 OR instr(name, ?) > 0)")
            params.extend([search, search])
        if after is not None:
            where.append(f"(created_at, instance_id) {'<' if newest_first else '>'} (?, ?)")
            params.extend(after)
        order = "created_at DESC, instance_id DESC" if newest_first else "created_at, instance_id"
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE {' AND '.join(where)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_instance(r) for r in self._rows(sql, params)]

    def count_instances_by_status(self, hub: str) -> dict[int, int]:
        rows = self._rows("SELECT status, count(*) FROM instances WHERE hub = ? GROUP BY status", (hub,))
        return {r[0]: r[1] for r in rows}

    # -- history ----------------------------------------------------------------

    def history(self, hub: str, instance_id: str) -> list[bytes]:
        with self._lock:
            events = self._histories.get((hub, instance_id))
            if events is None:
                rows = self._rows(
                    "SELECT event FROM history WHERE hub = ? AND instance_id = ? ORDER BY seq", (hub, instance_id)
                )
                events = tuple(r[0] for r in rows)
                self._cache(self._histories, (hub, instance_id), events, CACHED_HISTORIES)
            return list(events)

    def append_history(self, hub: str, instance_id: str, events: Sequence[bytes]) -> None:
        with self.transaction():
            before = self.history(hub, instance_id)
            self._exec_rows(
                "INSERT INTO history (hub, instance_id, seq, event) VALUES {}", "(?, ?, ?, ?)",
                [(hub, instance_id, len(before) + i, e) for i, e in enumerate(events)],
            )
            self._cache(self._histories, (hub, instance_id), (*before, *events), CACHED_HISTORIES)

    def clear_history(self, hub: str, instance_id: str) -> None:
        with self._lock:
            self._exec("DELETE FROM history WHERE hub = ? AND instance_id = ?", (hub, instance_id))
            self._cache(self._histories, (hub, instance_id), (), CACHED_HISTORIES)

    # -- messages ---------------------------------------------------------------

    def add_message(
        self,
        hub: str,
        kind: str,
        target: str,
        payload: bytes,
        visible_at: float,
        sender: str | None = None,
        execution_id: str | None = None,
    ) -> int:
        with self._lock:
            message_id = self._next_message_id
            self._next_message_id += 1
            self._exec_rows(
                "INSERT INTO messages (id, hub, kind, target, execution_id, sender, visible_at, payload) VALUES {}",
                "(?, ?, ?, ?, ?, ?, ?, ?)",
                [(message_id, hub, kind, target, execution_id, sender, visible_at, payload)],
            )
            message = MessageRow(message_id, hub, kind, target, execution_id, sender, visible_at, payload)
            self._mirror(message)
            self._remember(lambda: self._unmirror(message.id))
            return message.id

    def _load_messages(self) -> None:
        self._inboxes: dict[tuple[str, str, str], dict[int, MessageRow]] = {}
        self._message_keys: dict[int, tuple[str, str, str]] = {}
        for r in self._rows("SELECT * FROM messages ORDER BY id"):
            self._mirror(MessageRow(*r))
        # IDs are handed out here, so that a message is known before its row is written; like
        # AUTOINCREMENT, never one that was used before, even by a message since deleted.
        used = self._rows("SELECT max(seq) FROM sqlite_sequence WHERE name = 'messages'")[0][0]
        self._next_message_id = max(used or 0, max(self._message_keys, default=0)) + 1

    def _mirror(self, m: MessageRow) -> None:
        key = (m.hub, m.kind, m.target)
        inbox = self._inboxes.setdefault(key, {})
        if inbox and next(reversed(inbox)) > m.id:  # restored by an undo: keep id order
            inbox = self._inboxes[key] = dict(sorted({**inbox, m.id: m}.items()))
        else:
            inbox[m.id] = m
        self._message_keys[m.id] = key

    def _unmirror(self, message_id: int) -> MessageRow | None:
        key = self._message_keys.pop(message_id, None)
        if key is None:
            return None
        inbox = self._inboxes[key]
        message = inbox.pop(message_id)
        if not inbox:
            del self._inboxes[key]
        return message

    def iter_messages(self, hub: str, kind: str, target: str, visible_by: float | None = None) -> Iterator[MessageRow]:
        """The target's messages in arrival order (a snapshot, safe to change the inbox while iterating)."""
        with self._lock:
            messages = list(self._inboxes.get((hub, kind, target), {}).values())
        for m in messages:
            if visible_by is None or m.visible_at <= visible_by:
                yield m

    def messages_for(self, hub: str, kind: str, target: str, visible_by: float | None = None) -> list[MessageRow]:
        return list(self.iter_messages(hub, kind, target, visible_by))

    def get_message(self, message_id: int) -> MessageRow | None:
        with self._lock:
            key = self._message_keys.get(message_id)
            return None if key is None else self._inboxes[key][message_id]

    def delete_messages(self, ids: Sequence[int]) -> None:
        with self._lock:
            if ids:
                self._exec_rows("DELETE FROM messages WHERE id IN ({})", "?", [(i,) for i in ids])
            for message_id in ids:
                message = self._unmirror(message_id)
                if message is not None:
                    self._remember(lambda m=message: self._mirror(m))

    def pending_targets(self) -> list[tuple[str, str, str, float]]:
        """(hub, kind, target, earliest visible_at) for every target with messages."""
        with self._lock:
            return [(*key, min(m.visible_at for m in inbox.values())) for key, inbox in self._inboxes.items()]

    def activity_messages(self) -> list[MessageRow]:
        with self._lock:
            found = [m for key, inbox in self._inboxes.items() if key[1] == ACTIVITY for m in inbox.values()]
        return sorted(found, key=lambda m: m.id)

    def count_messages(self, hub: str, kind: str, target: str) -> int:
        with self._lock:
            return len(self._inboxes.get((hub, kind, target), ()))

    # -- entities ---------------------------------------------------------------

    def get_entity(self, hub: str, instance_id: str) -> EntityRow | None:
        with self._lock:
            row = self._entities.get((hub, instance_id), _ABSENT)
            if row is _ABSENT:
                rows = self._rows("SELECT * FROM entities WHERE hub = ? AND instance_id = ?", (hub, instance_id))
                row = EntityRow(*rows[0]) if rows else None
                self._cache(self._entities, (hub, instance_id), row, CACHED_ROWS)
            return None if row is None else _copy_entity(row)

    def _track_lock(self, hub: str, entity_id: str, owner: str | None) -> None:
        old = self.get_entity(hub, entity_id)
        old_owner = old.lock_owner if old else None
        if old_owner == owner:
            return

        def move(src: str | None, dst: str | None) -> None:
            if src is not None:
                held = self._locks.get((hub, src), set())
                held.discard(entity_id)
                if not held:
                    self._locks.pop((hub, src), None)
            if dst is not None:
                self._locks.setdefault((hub, dst), set()).add(entity_id)

        move(old_owner, owner)
        self._remember(lambda: move(owner, old_owner))

    def locks_held_by(self, hub: str, owner: str) -> list[str]:
        with self._lock:
            return sorted(self._locks.get((hub, owner), ()))

    def put_entity(self, row: EntityRow) -> None:
        """Store the entity, or drop its row when it has neither state nor lock."""
        with self._lock:
            self._track_lock(row.hub, row.instance_id, row.lock_owner)
            if row.state is None and row.lock_owner is None:
                self._exec("DELETE FROM entities WHERE hub = ? AND instance_id = ?", (row.hub, row.instance_id))
                self._cache(self._entities, (row.hub, row.instance_id), None, CACHED_ROWS)
                return
            self._exec(
                "INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?, ?)",
                (row.hub, row.instance_id, row.state, row.last_modified, row.lock_owner, row.critical_section),
            )
            self._cache(self._entities, (row.hub, row.instance_id), _copy_entity(row), CACHED_ROWS)

    def query_entities(
        self,
        hub: str,
        prefix: str | None = None,
        modified_from: float | None = None,
        modified_to: float | None = None,
        after: str | None = None,
        limit: int | None = None,
        locked_only: bool = False,
        name_or_key: str | None = None,
    ) -> list[EntityRow]:
        """Entities ordered by ID; ``name_or_key`` matches a name prefix or a key prefix."""
        where, params = ["hub = ?"], [hub]
        if prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            params.extend([len(prefix), prefix])
        if name_or_key:
            pattern = name_or_key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(instance_id LIKE ? ESCAPE '\\' OR instance_id LIKE ? ESCAPE '\\')")
            params.extend([f"@{pattern.lower()}%", f"@%@{pattern}%"])
        if modified_from is not None:
            where.append("last_modified >= ?")
            params.append(modified_from)
        if modified_to is not None:
            where.append("last_modified < ?")
            params.append(modified_to)
        if after is not None:
            where.append("instance_id > ?")
            params.append(after)
        if locked_only:
            where.append("lock_owner IS NOT NULL")
        sql = f"SELECT * FROM entities WHERE {' AND '.join(where)} ORDER BY instance_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [EntityRow(*r) for r in self._rows(sql, params)]

    def entities_locked_by(self, hub: str, owner: str) -> list[EntityRow]:
        return [row for entity_id in self.locks_held_by(hub, owner) if (row := self.get_entity(hub, entity_id))]

    def count_entities(self, hub: str) -> int:
        return self._rows("SELECT count(*) FROM entities WHERE hub = ?", (hub,))[0][0]

    def delete_hub(self, hub: str) -> None:
        with self.transaction():
            for table in ("instances", "history", "messages", "entities"):
                self._exec(f"DELETE FROM {table} WHERE hub = ?", (hub,))
            for key in [k for k in self._locks if k[0] == hub]:
                held = self._locks.pop(key)
                self._remember(lambda k=key, v=held: self._locks.__setitem__(k, v))
            for cache in (self._instances, self._entities, self._histories):
                for key in [k for k in cache if k[0] == hub]:
                    old = cache.pop(key)
                    self._remember(lambda c=cache, k=key, v=old: c.__setitem__(k, v))
            for key in [k for k in self._inboxes if k[0] == hub]:
                for message_id in list(self._inboxes[key]):
                    message = self._unmirror(message_id)
                    self._remember(lambda m=message: self._mirror(m))
