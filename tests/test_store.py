"""emulator/store.py on its own: schema, transactions, queries, entity rows."""

from __future__ import annotations

import sqlite3

import pytest

from emulator.store.checkpoints import COMMITS_PER_CHECKPOINT
from emulator.store import ACTIVITY, ENTITY, ORCHESTRATION, SCHEMA_VERSION, EntityRow, InstanceRow, SchemaError, Store
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
    db = sqlite3.connect(tmp_path / "n.db")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '7')")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="schema version 7"):
        Store(tmp_path / "n.db")


def test_instances_round_trip_with_tags(store):
    store.put_instance(instance())
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
    assert store.pending_targets() == [("h", ENTITY, "@c@k", 1.0)]


def test_deleting_an_instance_drops_its_history_and_messages(store):
    store.put_instance(instance())
    store.append_history("h", "i", [b"a"])
    store.add_message("h", ORCHESTRATION, "i", b"m", 0.0)
    store.add_message("h", ACTIVITY, "i", b"a", 0.0)
    store.delete_instance("h", "i")
    assert store.history("h", "i") == [] and store.activity_messages() == []


def test_entity_without_state_or_lock_is_removed(store):
    store.put_entity(EntityRow("h", "@c@k", "1", 1.0, None, None))
    assert store.count_entities("h") == 1
    store.put_entity(EntityRow("h", "@c@k", None, 2.0, "orch", "cs"))
    assert store.entities_locked_by("h", "orch")[0].state is None
    store.put_entity(EntityRow("h", "@c@k", None, 3.0, None, None))
    assert store.get_entity("h", "@c@k") is None


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
        except sqlite3.OperationalError:
            return 0  # not even the schema has been copied over yet
        finally:
            db.close()

    thread = s._checkpointer._thread
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
