"""dts_emulator/store on its own: schema and migrations, transactions, queries, entity rows, kept counts."""

from __future__ import annotations

import random
import sqlite3

import pytest

from dts_emulator.store import (
    ACTIVITY,
    ENTITY,
    MIGRATIONS,
    ORCHESTRATION,
    SCHEMA_VERSION,
    EntityRow,
    InstanceRow,
    SchemaError,
    Store,
)
from dts_emulator.store.checkpoints import COMMITS_PER_CHECKPOINT
from dts_emulator.store.rows import INSTANCE_COLUMNS, instance_from
from dts_emulator.store.schema import migrate
from tests.helpers import wait_until


def instance(hub="h", instance_id="i", created=1.0, status=0, parent=None) -> InstanceRow:
    return InstanceRow(hub, instance_id, "e1", "orch", None, status, "in", None, None, None, created, created,
                       None, None, parent, None, None, {"k": "v"})


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    s = Store(tmp_path / "s.db" if request.param == "file" else None)
    yield s
    s.close()


def test_new_file_carries_the_schema_version(tmp_path):
    s = Store(tmp_path / "v.db")
    assert s.schema_version() == SCHEMA_VERSION
    s.close()
    reopened = Store(tmp_path / "v.db")
    assert reopened.schema_version() == SCHEMA_VERSION
    reopened.close()


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "n.db").close()
    db = sqlite3.connect(tmp_path / "n.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaError, match=f"schema version {SCHEMA_VERSION + 1}; this emulator reads up to"):
        Store(tmp_path / "n.db")


def test_newer_file_from_before_user_version_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "n.db")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '7')")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="schema version 7"):
        Store(tmp_path / "n.db")


# The DDL of the emulator before migrations were single statements (meta.schema_version = 1), as it was.
OLD_DDL = """
    CREATE TABLE instances (
        hub TEXT NOT NULL, instance_id TEXT NOT NULL, execution_id TEXT NOT NULL, name TEXT NOT NULL,
        version TEXT, status INTEGER NOT NULL, input TEXT, output TEXT, custom_status TEXT, failure BLOB,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, completed_at REAL, scheduled_start REAL,
        parent_instance_id TEXT, parent_execution_id TEXT, parent_task_id INTEGER, tags TEXT,
        PRIMARY KEY (hub, instance_id)
    );
    CREATE INDEX instances_by_created ON instances (hub, created_at);
    CREATE INDEX instances_by_parent ON instances (hub, parent_instance_id)
        WHERE parent_instance_id IS NOT NULL;
    CREATE TABLE history (
        hub TEXT NOT NULL, instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL,
        PRIMARY KEY (hub, instance_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, hub TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
        execution_id TEXT, sender TEXT, visible_at REAL NOT NULL, payload BLOB NOT NULL
    );
    CREATE TABLE entities (
        hub TEXT NOT NULL, instance_id TEXT NOT NULL, state TEXT, last_modified REAL NOT NULL,
        lock_owner TEXT, critical_section TEXT, PRIMARY KEY (hub, instance_id)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    INSERT INTO meta VALUES ('schema_version', '1');
    INSERT INTO instances (hub, instance_id, execution_id, name, status, created_at, updated_at)
        VALUES ('h', 'old', 'e', 'orch', 1, 1.0, 1.0);
    INSERT INTO history VALUES ('h', 'old', 0, x'01');
    INSERT INTO messages (hub, kind, target, visible_at, payload) VALUES ('h', 'orchestration', 'old', 0, x'02');
    INSERT INTO entities VALUES ('h', '@c@k', '5', 1.0, 'old', 'cs');
"""


def layout(path) -> dict:
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        indexes = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")]
        return {"indexes": indexes, **{t: db.execute(f"PRAGMA table_xinfo({t})").fetchall() for t in tables}}
    finally:
        db.close()


def test_a_file_from_before_user_version_is_adopted_with_its_data(tmp_path):
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    db.executescript(OLD_DDL)
    db.close()
    Store(tmp_path / "new.db").close()
    s = Store(old)
    try:
        assert s.schema_version() == SCHEMA_VERSION
        assert [r.instance_id for r in s.query_instances("h")] == ["old"]
        assert s.history("h", "old") == [b"\x01"]
        assert [m.payload for m in s.messages_for("h", ORCHESTRATION, "old")] == [b"\x02"]
        assert s.locks_held_by("h", "old") == ["@c@k"] and s.count_entities("h") == 1
        assert s.count_instances_by_status("h") == {1: 1}
    finally:
        s.close()
    assert layout(old) == layout(tmp_path / "new.db")  # the same tables, columns and indexes as a new file
    db = sqlite3.connect(old)
    # older emulators refuse it:
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    db.close()


def test_a_migration_step_is_one_statement_whatever_its_text_holds(tmp_path):
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    steps = [*MIGRATIONS, "INSERT INTO meta (key, value) VALUES ('note', 'a; b; CREATE TABLE x (y)')"]
    migrate(db, tmp_path / "m.db", steps)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(steps)
    assert db.execute("SELECT value FROM meta WHERE key = 'note'").fetchone() == ("a; b; CREATE TABLE x (y)",)
    db.close()


def test_a_failed_migration_step_leaves_the_file_at_the_step_before(tmp_path):
    db = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    steps = [*MIGRATIONS, "CREATE TABLE extra (a)", "INSERT INTO no_such_table VALUES (1)"]
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        migrate(db, tmp_path / "m.db", steps)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(steps) - 1
    assert not db.in_transaction
    db.close()


def on_disk(store: Store, sql: str, params=()) -> list[tuple]:
    """Rows as SQLite has them, never the store's memory: a connection of its own for a file."""
    if store.path is None:
        return [tuple(r) for r in store._rows(sql, params)]  # the only connection to an in-memory database
    db = sqlite3.connect(store.path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def disk_instances(store: Store, hub: str) -> list[InstanceRow]:
    return [instance_from(r) for r in on_disk(store, f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE hub = ?", (hub,))]


def test_instances_round_trip_with_tags(store):
    store.put_instance(instance())
    assert disk_instances(store, "h") == [instance()]
    assert store.get_instance("h", "i") == instance()
    assert store.get_instance("other-hub", "i") is None


def test_failed_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.put_instance(instance())
        store.add_message("h", ORCHESTRATION, "i", b"x", 0.0)
        raise RuntimeError("abort")
    assert store.get_instance("h", "i") is None
    assert store.messages_for("h", ORCHESTRATION, "i") == []


def test_nested_transactions_commit_together(store):
    with store.transaction():
        store.put_instance(instance())
        with store.transaction():
            store.append_history("h", "i", [b"a", b"b"])
    store.append_history("h", "i", [b"c"])
    assert store.history("h", "i") == [b"a", b"b", b"c"]
    assert on_disk(store, "SELECT seq, event FROM history ORDER BY seq") == [(0, b"a"), (1, b"b"), (2, b"c")]


def test_query_instances_filters_and_continues_pages(store):
    for n in range(5):
        store.put_instance(instance(instance_id=f"a{n}", created=float(n), status=n % 2))
    store.put_instance(instance(instance_id="b0", created=9.0, parent="a0"))
    assert [r.instance_id for r in store.query_instances("h", prefix="a", limit=2)] == ["a0", "a1"]
    assert [r.instance_id for r in store.query_instances("h", prefix="a", after=(1.0, "a1"))] == ["a2", "a3", "a4"]
    assert [r.instance_id for r in store.query_instances("h", statuses=[1])] == ["a1", "a3"]
    assert [r.instance_id for r in store.query_instances("h", created_from=3.0, created_to=9.0)] == ["a3", "a4"]
    assert [r.instance_id for r in store.query_instances("h", parent="a0")] == ["b0"]
    assert store.count_instances_by_status("h") == {0: 4, 1: 2}


def test_prefix_matching_is_literal_not_a_pattern(store):
    store.put_instance(instance(instance_id="a_b"))
    store.put_instance(instance(instance_id="axb"))
    assert [r.instance_id for r in store.query_instances("h", prefix="a_")] == ["a_b"]


def test_messages_are_ordered_and_filtered_by_visibility(store):
    ids = [store.add_message("h", ENTITY, "@c@k", bytes([n]), visible_at=float(n), sender="s") for n in range(3)]
    assert [m.id for m in store.messages_for("h", ENTITY, "@c@k", visible_by=1.0)] == ids[:2]
    store.delete_messages(ids[:1])
    assert store.count_messages("h", ENTITY, "@c@k") == 2
    assert on_disk(store, "SELECT id, payload, sender FROM messages") == [(i, bytes([n]), "s") for n, i in
                                                                          enumerate(ids) if n]
    assert store.pending_targets() == [("h", ENTITY, "@c@k", 1.0)]


def test_deleting_an_instance_drops_its_history_and_messages(store):
    store.put_instance(instance())
    store.append_history("h", "i", [b"a"])
    store.add_message("h", ORCHESTRATION, "i", b"m", 0.0)
    store.add_message("h", ACTIVITY, "i", b"a", 0.0)
    store.delete_instance("h", "i")
    assert store.history("h", "i") == [] and store.activity_messages() == []
    for table in ("instances", "history", "messages"):
        assert on_disk(store, f"SELECT count(*) FROM {table}") == [(0,)]


def test_entity_without_state_or_lock_is_removed(store):
    store.put_entity(EntityRow("h", "@c@k", "1", 1.0, None, None))
    assert store.count_entities("h") == 1
    store.put_entity(EntityRow("h", "@c@k", None, 2.0, "orch", "cs"))
    assert store.entities_locked_by("h", "orch")[0].state is None
    assert on_disk(store, "SELECT * FROM entities") == [("h", "@c@k", None, 2.0, "orch", "cs")]
    store.put_entity(EntityRow("h", "@c@k", None, 3.0, None, None))
    assert store.get_entity("h", "@c@k") is None
    assert on_disk(store, "SELECT * FROM entities") == [] and store.count_entities("h") == 0


def test_query_entities_pages_by_id(store):
    for key in "abcde":
        store.put_entity(EntityRow("h", f"@c@{key}", "0", float(ord(key)), None, None))
    assert [r.instance_id for r in store.query_entities("h", prefix="@c@", limit=2)] == ["@c@a", "@c@b"]
    assert [r.instance_id for r in store.query_entities("h", after="@c@c")] == ["@c@d", "@c@e"]
    assert [r.instance_id for r in store.query_entities("h", modified_from=float(ord("d")))] == ["@c@d", "@c@e"]


def test_delete_hub_touches_only_that_hub(store):
    store.put_instance(instance(hub="a"))
    store.put_instance(instance(hub="b"))
    store.delete_hub("a")
    assert store.get_instance("a", "i") is None and store.get_instance("b", "i") is not None


def test_a_thread_checkpoints_the_wal_into_the_database_file(tmp_path):
    """Commits skip SQLite's in-commit checkpoint; the checkpoint thread copies them over instead."""
    path = tmp_path / "c.db"
    s = Store(path)

    def messages_in_main_file() -> int:
        db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # reads the main file, not the WAL
        try:
            return db.execute("SELECT count(*) FROM messages").fetchone()[0]
        except sqlite3.DatabaseError:
            return 0  # not even the schema has been copied over yet, or a checkpoint is copying right now
        finally:
            db.close()

    thread = s._file.checkpointer._thread
    try:
        for i in range(COMMITS_PER_CHECKPOINT + 1):
            with s.transaction():
                s.add_message("h", ENTITY, f"@e@{i}", b"x", 0.0)
        wait_until(lambda: messages_in_main_file() > 0, timeout=15, message="a checkpoint by the thread")
    finally:
        s.close()
    assert not thread.is_alive()  # closing the store stops its thread


def statements(store: Store) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_a_one_statement_transaction_needs_no_begin_and_is_durable(tmp_path):
    s = Store(tmp_path / "one.db")
    seen = statements(s)
    with s.transaction():
        message_id = s.add_message("h", ENTITY, "@e@k", b"signal", 0.0)
    s.close()
    assert not [sql for sql in seen if sql in ("BEGIN", "COMMIT")], seen
    reopened = Store(tmp_path / "one.db")
    assert [(m.id, m.payload) for m in reopened.messages_for("h", ENTITY, "@e@k")] == [(message_id, b"signal")]
    reopened.close()


def test_many_rows_go_out_in_few_statements_and_all_arrive(tmp_path):
    s = Store(tmp_path / "many.db")
    seen = statements(s)
    with s.transaction():
        ids = [s.add_message("h", ENTITY, "@e@k", f"m{i}".encode(), 0.0) for i in range(450)]
        s.append_history("h", "i", [f"e{i}".encode() for i in range(450)])
    inserts = [sql for sql in seen if sql.startswith("INSERT")]
    assert 2 <= len(inserts) <= 6, len(inserts)  # 900 rows, at most 200 to a statement
    s.close()
    reopened = Store(tmp_path / "many.db")
    assert [m.id for m in reopened.messages_for("h", ENTITY, "@e@k")] == ids
    assert reopened.history("h", "i") == [f"e{i}".encode() for i in range(450)]
    reopened.close()


def test_a_read_inside_a_transaction_sees_its_writes_and_a_rollback_undoes_them(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.put_entity(EntityRow("h", "@e@a", "1", 1.0, None, None))
        assert [r.instance_id for r in store.query_entities("h")] == ["@e@a"]  # a query, not the cache
        raise RuntimeError("fail after the writes reached SQLite")
    assert store.query_entities("h") == [] and store.get_entity("h", "@e@a") is None


def test_message_ids_are_never_reused_even_after_a_restart(tmp_path):
    s = Store(tmp_path / "ids.db")
    with s.transaction():
        first = s.add_message("h", ORCHESTRATION, "i", b"x", 0.0)
    with s.transaction():
        s.delete_messages([first])
    s.close()
    reopened = Store(tmp_path / "ids.db")
    with reopened.transaction():
        second = reopened.add_message("h", ORCHESTRATION, "i", b"y", 0.0)
    reopened.close()
    assert second > first


def test_kept_counts_equal_count_star_after_random_writes_and_rollbacks(tmp_path):
    class Abort(Exception):
        pass

    rng = random.Random(11)
    s = Store(tmp_path / "counts.db")
    rolled_back = committed = 0
    for _ in range(400):
        try:
            with s.transaction():
                for _ in range(rng.randint(1, 4)):
                    hub, key, op = rng.choice("ab"), f"k{rng.randrange(25)}", rng.random()
                    if op < 0.45:
                        s.put_instance(instance(hub=hub, instance_id=key, status=rng.randrange(5)))
                    elif op < 0.6:
                        s.delete_instance(hub, key)
                    elif op < 0.995:
                        state, owner = rng.choice([None, "1"]), rng.choice([None, None, "o"])
                        s.put_entity(EntityRow(hub, f"@c@{key}", state, 1.0, owner, None))
                    else:
                        s.delete_hub(hub)
                if rng.random() < 0.3:
                    raise Abort
            committed += 1
        except Abort:
            rolled_back += 1
    assert rolled_back > 80 and committed > 200

    def counted(store: Store) -> dict:
        return {hub: (store.count_instances_by_status(hub), store.count_entities(hub)) for hub in "ab"}

    db = sqlite3.connect(tmp_path / "counts.db")
    on_disk = {hub: (
        dict(db.execute("SELECT status, count(*) FROM instances WHERE hub = ? GROUP BY status", (hub,)).fetchall()),
        db.execute("SELECT count(*) FROM entities WHERE hub = ?", (hub,)).fetchone()[0],
    ) for hub in "ab"}
    db.close()
    assert sum(n for statuses, _ in on_disk.values() for n in statuses.values()) > 0  # something to count
    assert counted(s) == on_disk
    s.close()
    reopened = Store(tmp_path / "counts.db")  # counted once at open
    assert counted(reopened) == on_disk
    reopened.close()
